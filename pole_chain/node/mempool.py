"""The transaction pool: signed transactions waiting for a block.

A transaction enters only after the checks a block would make against the current head state
(chain id, signature, nonce, balance, gas) pass, so a block built from `Mempool.executable`
rarely rejects anything. Per sender, transactions are kept by nonce; one whose nonce is ahead
of the account nonce waits ("queued") until the gap closes. The same (sender, nonce) is
replaced only by a transaction paying at least PRICE_BUMP_PERCENT more on both fee caps, as in
geth.

All methods are thread-safe: the RPC threads add, the block producer reads and prunes.
"""
from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from eth.abc import SignedTransactionAPI, StateAPI
from eth_typing import Address, Hash32
from eth_utils import ValidationError, to_checksum_address

#: Largest encoded transaction accepted (geth's txMaxSize).
MAX_TRANSACTION_SIZE = 128 * 1024
#: A replacement must raise both the fee cap and the tip cap by at least this much.
PRICE_BUMP_PERCENT = 10
#: Transactions held in total, and per sender.
MAX_POOL_SIZE = 4096
MAX_PER_SENDER = 64
#: How far ahead of the account nonce a queued transaction may be.
MAX_NONCE_GAP = 64

BLOB_TRANSACTION_TYPE = 3


class TransactionRejected(Exception):
    """A transaction the node refuses; the message says why and reaches the RPC caller."""


@dataclass(frozen=True)
class PoolEntry:
    transaction: SignedTransactionAPI
    sender: Address
    arrival: int

    @property
    def nonce(self) -> int:
        return self.transaction.nonce


def effective_tip(transaction: SignedTransactionAPI, base_fee: int) -> int:
    """What the block producer earns per gas: min(tip cap, fee cap - base fee)."""
    return min(transaction.max_priority_fee_per_gas, transaction.max_fee_per_gas - base_fee)


def _bumped(old: int) -> int:
    return old + (old * PRICE_BUMP_PERCENT + 99) // 100


class Mempool:
    """Pending transactions, by hash and by (sender, nonce)."""

    def __init__(
        self,
        chain_id: int,
        *,
        max_size: int = MAX_POOL_SIZE,
        max_per_sender: int = MAX_PER_SENDER,
    ) -> None:
        self.chain_id = chain_id
        self.max_size = max_size
        self.max_per_sender = max_per_sender
        self._lock = threading.RLock()
        self._by_hash: dict[Hash32, PoolEntry] = {}
        self._by_sender: dict[Address, dict[int, PoolEntry]] = {}
        self._arrivals = itertools.count()

    # -- admission ---------------------------------------------------------------------

    def add(
        self,
        transaction: SignedTransactionAPI,
        state: StateAPI,
        *,
        block_gas_limit: int,
        base_fee: int = 0,
    ) -> SignedTransactionAPI | None:
        """Admit `transaction` checked against `state` (the head state).

        Returns the transaction it replaced, if any. Raises TransactionRejected.
        """
        tx = transaction
        size = len(tx.encode())
        if size > MAX_TRANSACTION_SIZE:
            raise TransactionRejected(
                f"oversized data: transaction size {size}, limit {MAX_TRANSACTION_SIZE}"
            )
        if tx.type_id == BLOB_TRANSACTION_TYPE:
            raise TransactionRejected("blob transactions (type 3) are not supported")
        if tx.chain_id is None:
            raise TransactionRejected(
                "only replay-protected (EIP-155) transactions are accepted: "
                f"sign with chain id {self.chain_id}"
            )
        if tx.chain_id != self.chain_id:
            raise TransactionRejected(
                f"invalid chain id: transaction signed for chain {tx.chain_id}, "
                f"this chain is {self.chain_id}"
            )
        try:
            tx.check_signature_validity()
            sender = tx.sender
        except Exception as exc:  # eth_keys raises several types for a bad signature
            raise TransactionRejected(f"invalid sender signature: {exc}") from exc
        if tx.gas < tx.intrinsic_gas:
            raise TransactionRejected(
                f"intrinsic gas too low: gas {tx.gas}, minimum needed {tx.intrinsic_gas}"
            )
        try:
            tx.validate()
        except ValidationError as exc:
            raise TransactionRejected(f"invalid transaction: {exc}") from exc
        if tx.gas > block_gas_limit:
            raise TransactionRejected(
                f"exceeds block gas limit: gas {tx.gas}, limit {block_gas_limit}"
            )
        if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
            raise TransactionRejected(
                "max priority fee per gas higher than max fee per gas: "
                f"maxPriorityFeePerGas {tx.max_priority_fee_per_gas}, "
                f"maxFeePerGas {tx.max_fee_per_gas}"
            )
        if tx.max_fee_per_gas < base_fee:
            raise TransactionRejected(
                "max fee per gas less than block base fee: "
                f"maxFeePerGas {tx.max_fee_per_gas}, baseFee {base_fee}"
            )

        account_nonce = state.get_nonce(sender)
        if tx.nonce < account_nonce:
            raise TransactionRejected(
                f"nonce too low: next nonce {account_nonce}, tx nonce {tx.nonce}"
            )
        if tx.nonce > account_nonce + MAX_NONCE_GAP:
            raise TransactionRejected(
                f"nonce too high: next nonce {account_nonce}, tx nonce {tx.nonce} "
                f"(at most {MAX_NONCE_GAP} ahead)"
            )
        balance = state.get_balance(sender)
        cost = tx.gas * tx.max_fee_per_gas + tx.value
        if balance < cost:
            raise TransactionRejected(
                "insufficient funds for gas * price + value: "
                f"address {to_checksum_address(sender)} have {balance} want {cost}"
            )

        with self._lock:
            if tx.hash in self._by_hash:
                raise TransactionRejected(f"already known: 0x{tx.hash.hex()}")
            queue = self._by_sender.get(sender, {})
            old = queue.get(tx.nonce)
            if old is not None:
                old_tx = old.transaction
                if tx.max_fee_per_gas < _bumped(
                    old_tx.max_fee_per_gas
                ) or tx.max_priority_fee_per_gas < _bumped(old_tx.max_priority_fee_per_gas):
                    raise TransactionRejected(
                        "replacement transaction underpriced: both maxFeePerGas and "
                        f"maxPriorityFeePerGas must rise by at least {PRICE_BUMP_PERCENT}% "
                        f"over 0x{old_tx.hash.hex()}"
                    )
            elif len(queue) >= self.max_per_sender:
                raise TransactionRejected(
                    f"account {to_checksum_address(sender)} has too many pending "
                    f"transactions (limit {self.max_per_sender})"
                )
            elif len(self._by_hash) >= self.max_size:
                raise TransactionRejected(
                    f"transaction pool is full ({self.max_size} transactions)"
                )
            entry = PoolEntry(tx, sender, next(self._arrivals))
            if old is not None:
                del self._by_hash[old.transaction.hash]
            self._by_sender.setdefault(sender, {})[tx.nonce] = entry
            self._by_hash[tx.hash] = entry
            return old.transaction if old is not None else None

    # -- reading -----------------------------------------------------------------------

    def executable(self, state: StateAPI, base_fee: int = 0) -> list[SignedTransactionAPI]:
        """Transactions a block on top of `state` can include, in inclusion order.

        Per sender: consecutive nonces from the account nonce on, stopping at the first gap
        or at the first transaction whose fee cap is below `base_fee`. Across senders: the
        next transaction of highest effective tip first, ties to the earliest arrival
        (a heap merge, so one sender's nonce order is never broken).
        """
        with self._lock:
            runs: list[list[PoolEntry]] = []
            for sender, queue in self._by_sender.items():
                nonce = state.get_nonce(sender)
                run = []
                while nonce in queue and queue[nonce].transaction.max_fee_per_gas >= base_fee:
                    run.append(queue[nonce])
                    nonce += 1
                if run:
                    runs.append(run)

        def key(entry: PoolEntry) -> tuple[int, int]:
            return (-effective_tip(entry.transaction, base_fee), entry.arrival)

        heap = [(key(run[0]), index, 0) for index, run in enumerate(runs)]
        heapq.heapify(heap)
        ordered = []
        while heap:
            _, index, position = heapq.heappop(heap)
            run = runs[index]
            ordered.append(run[position].transaction)
            if position + 1 < len(run):
                heapq.heappush(heap, (key(run[position + 1]), index, position + 1))
        return ordered

    def pending_nonce(self, sender: Address, account_nonce: int) -> int:
        """The nonce after `sender`'s consecutive pooled transactions (for "pending")."""
        with self._lock:
            queue = self._by_sender.get(sender, {})
            nonce = account_nonce
            while nonce in queue:
                nonce += 1
            return nonce

    def get(self, tx_hash: Hash32) -> SignedTransactionAPI | None:
        with self._lock:
            entry = self._by_hash.get(tx_hash)
            return entry.transaction if entry else None

    def sender_of(self, tx_hash: Hash32) -> Address | None:
        with self._lock:
            entry = self._by_hash.get(tx_hash)
            return entry.sender if entry else None

    def transactions(self) -> list[SignedTransactionAPI]:
        """Every pooled transaction, in arrival order."""
        with self._lock:
            entries = sorted(self._by_hash.values(), key=lambda e: e.arrival)
            return [entry.transaction for entry in entries]

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        with self._lock:
            return tx_hash in self._by_hash

    # -- removal -----------------------------------------------------------------------

    def remove(self, tx_hashes: Iterable[Hash32]) -> None:
        with self._lock:
            for tx_hash in tx_hashes:
                entry = self._by_hash.pop(tx_hash, None)
                if entry is not None:
                    self._drop_from_sender(entry)

    def prune(self, state: StateAPI) -> list[SignedTransactionAPI]:
        """Drop what a new head made stale (nonce below the account nonce); return it."""
        with self._lock:
            stale = []
            for sender in list(self._by_sender):
                account_nonce = state.get_nonce(sender)
                for nonce, entry in list(self._by_sender[sender].items()):
                    if nonce < account_nonce:
                        stale.append(entry)
            for entry in stale:
                del self._by_hash[entry.transaction.hash]
                self._drop_from_sender(entry)
            return [entry.transaction for entry in stale]

    def clear(self) -> list[SignedTransactionAPI]:
        with self._lock:
            everything = self.transactions()
            self._by_hash.clear()
            self._by_sender.clear()
            return everything

    def _drop_from_sender(self, entry: PoolEntry) -> None:
        queue = self._by_sender.get(entry.sender)
        if queue is not None and queue.get(entry.nonce) is entry:
            del queue[entry.nonce]
            if not queue:
                del self._by_sender[entry.sender]

