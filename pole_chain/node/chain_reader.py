"""Read-only access to the node's chain: the one door the RPC layer and the services read by.

The JSON-RPC handlers answer from headers, blocks, receipts and states; reading them through
this class keeps py-evm's database API (`chaindb`, transaction indexes) in one place, so a
change of storage or of py-evm touches this module and not every handler. Every method reads
the chain as it is: callers hold the node lock, so a block import cannot interleave.
"""
from __future__ import annotations

from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI, StateAPI, VirtualMachineAPI
from eth.exceptions import HeaderNotFound, TransactionNotFound
from eth_typing import Address, Hash32

from vm_hooks.chain import PoLeChain


class ChainReader:
    """Headers, blocks, receipts and states of one chain (callers hold the node lock)."""

    def __init__(self, chain: PoLeChain) -> None:
        self._chain = chain
        self._child_template: tuple[bytes, BlockHeaderAPI] | None = None

    # -- headers -----------------------------------------------------------------------

    def head(self) -> BlockHeaderAPI:
        return self._chain.get_canonical_head()

    def header(self, block_hash: Hash32) -> BlockHeaderAPI:
        """The header stored under `block_hash`, canonical or not; raises HeaderNotFound."""
        return self._chain.get_block_header_by_hash(block_hash)

    def canonical_header(self, number: int) -> BlockHeaderAPI:
        """The canonical header at height `number`; raises HeaderNotFound."""
        return self._chain.get_canonical_block_header_by_number(number)

    def has_header(self, block_hash: Hash32) -> bool:
        return self._chain.chaindb.header_exists(block_hash)

    def is_canonical(self, header: BlockHeaderAPI) -> bool:
        try:
            return self._chain.get_canonical_block_hash(header.block_number) == header.hash
        except HeaderNotFound:
            return False

    def score(self, header: BlockHeaderAPI) -> int | None:
        """The chain score up to `header` (what eth calls totalDifficulty), None if unknown."""
        try:
            return self._chain.get_score(header.hash)
        except HeaderNotFound:
            return None

    def child_header(self, parent: BlockHeaderAPI | None = None) -> BlockHeaderAPI:
        """A template of the next header on `parent` (gas limit, base fee, blob fee).

        Building one costs about half a millisecond and the mempool, block building and
        RPC fee answers each want it for the same parent, so the latest one is kept.
        """
        parent = parent or self.head()
        cached = self._child_template
        if cached is None or cached[0] != parent.hash:
            cached = (parent.hash, self._chain.create_header_from_parent(parent))
            self._child_template = cached
        return cached[1]

    def next_base_fee(self, parent: BlockHeaderAPI | None = None) -> int:
        return getattr(self.child_header(parent), "base_fee_per_gas", 0) or 0

    def pending_header(
        self, parent: BlockHeaderAPI, *, timestamp: int, coinbase: Address
    ) -> BlockHeaderAPI:
        """The header a block on `parent` at `timestamp` would start from ("pending")."""
        return self._chain.create_header_from_parent(
            parent, timestamp=timestamp, coinbase=coinbase
        )

    # -- blocks, receipts, transactions ------------------------------------------------

    def block(self, header: BlockHeaderAPI) -> BlockAPI:
        return self._chain.get_block_by_header(header)

    def receipts(self, block: BlockAPI) -> tuple[ReceiptAPI, ...]:
        return tuple(block.get_receipts(self._chain.chaindb))

    def mined_transaction(
        self, tx_hash: Hash32
    ) -> tuple[SignedTransactionAPI, BlockHeaderAPI, int] | None:
        """(transaction, canonical header, index) of a mined transaction, else None."""
        try:
            number, index = self._chain.chaindb.get_transaction_index(tx_hash)
            header = self.canonical_header(number)
            tx = self._chain.get_canonical_transaction_by_index(number, index)
        except (TransactionNotFound, HeaderNotFound, IndexError, KeyError):
            return None
        return (tx, header, index) if tx.hash == tx_hash else None

    # -- states ------------------------------------------------------------------------

    def vm_at(self, header: BlockHeaderAPI) -> VirtualMachineAPI:
        """A VM whose state is the state after `header` (throw-away: never persisted)."""
        return self._chain.get_vm(header)

    def state_at(self, header: BlockHeaderAPI) -> StateAPI:
        """The state after `header` (read-only by convention: never persisted)."""
        return self.vm_at(header).state
