"""Transaction admission: raw bytes from eth_sendRawTransaction into the pool.

Decoding, the pool's checks against the head state, telling pending-transaction filters,
and, on an automining dev node, mining the block before eth_sendRawTransaction answers (so
the receipt exists when web3 asks for it). The unlocked dev keys of eth_sendTransaction live
here too: signing is the other way a transaction enters.
"""
from __future__ import annotations

from eth.abc import SignedTransactionAPI
from eth_account.signers.local import LocalAccount
from eth_typing import Address, Hash32

from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.events import NodeEvents
from pole_chain.node.locking import NodeLock
from pole_chain.node.mempool import MAX_TRANSACTION_SIZE, Mempool, TransactionRejected
from pole_chain.node.production import BlockProducer
from vm_hooks.chain import PoLeChain


class TransactionAdmission:
    """Admits signed transactions to the pool (and automines them on a dev node)."""

    def __init__(
        self,
        chain: PoLeChain,
        reader: ChainReader,
        mempool: Mempool,
        lock: NodeLock,
        events: NodeEvents,
        producer: BlockProducer,
        signers: dict[Address, LocalAccount],
    ) -> None:
        self._chain = chain
        self._reader = reader
        self._mempool = mempool
        self._lock = lock
        self._events = events
        self._producer = producer
        self._signers = signers

    def decode(self, raw: bytes) -> SignedTransactionAPI:
        """The transaction encoded in `raw`, for the next block's fork; TransactionRejected."""
        if len(raw) > MAX_TRANSACTION_SIZE:
            raise TransactionRejected(
                f"oversized data: transaction size {len(raw)}, limit {MAX_TRANSACTION_SIZE}"
            )
        if not raw:
            raise TransactionRejected("empty transaction")
        builder = self._chain.get_vm_class_for_block_number(
            self._reader.head().block_number + 1
        ).get_transaction_builder()
        try:
            return builder.decode(bytes(raw))
        except Exception as exc:  # rlp and py-evm raise many types for bad encodings
            raise TransactionRejected(f"invalid transaction encoding: {exc}") from exc

    def submit(self, raw: bytes) -> Hash32:
        """Admit a signed transaction; on an automining dev node, also mine it.

        Returns the transaction hash. Raises TransactionRejected with the reason.
        """
        with self._lock.writing():
            tx = self.decode(raw)
            head = self._reader.head()
            self._mempool.add(
                tx,
                self._reader.state_at(head),
                block_gas_limit=self._reader.child_header(head).gas_limit,
                base_fee=self._reader.next_base_fee(head),
            )
            self._events.pending(tx)
            if self._producer.automine:
                self._producer.automine_after(tx)
            return tx.hash

    def pending(self) -> list[SignedTransactionAPI]:
        """Every pooled transaction, in arrival order."""
        return self._mempool.transactions()

    def pending_nonce(self, address: Address) -> int:
        """The next nonce for `address` counting its consecutive pooled transactions."""
        with self._lock:
            account_nonce = self._reader.state_at(self._reader.head()).get_nonce(address)
            return self._mempool.pending_nonce(address, account_nonce)

    def signer_for(self, address: Address) -> LocalAccount | None:
        """The unlocked dev key for `address` (eth_sendTransaction), None if not unlocked."""
        return self._signers.get(Address(bytes(address)))
