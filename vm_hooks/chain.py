"""The PoLe chain class: py-evm's Chain with a deterministic fork-choice tie-break.

py-evm sums ``difficulty`` (our score) into the chain score and switches head only on a
strictly higher score, so two equal-scoring siblings would leave each node on whichever it
saw first. PoLe breaks ties toward the lower ``tiebreak_key``, so every node agrees.

The key of a PoLe block is keccak(release digest prefix || coinbase), not the block hash:
its miner can wrap its own seal again with other transactions or another timestamp (only
the coinbase can sign a wrapping, vm_hooks/seal.py) and grind the block hash, but it cannot
grind its key, because the release it answers is signed by the poster only after the miner
has trained and announced. Two blocks with the same key carry the same seal (the same miner,
paid the same way), and the one seen first stays.
"""
from __future__ import annotations

from typing import Iterable, Tuple

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI, BlockImportResult, DatabaseAPI
from eth.chains.base import Chain
from eth.constants import GENESIS_PARENT_HASH
from eth.db.chain import ChainDB
from eth.exceptions import HeaderNotFound
from eth.db.chain_gaps import GapChange, GapInfo
from eth.typing import ChainGaps
from eth.db.schema import SchemaV1
from eth_typing import Hash32
from eth_utils import keccak

from vm_hooks.params import CHAIN_ID

from .seal import BlockKind, read_seal

HeaderChanges = Tuple[Tuple[BlockHeaderAPI, ...], Tuple[BlockHeaderAPI, ...]]


def tiebreak_key(header: BlockHeaderAPI) -> bytes:
    """Lower wins between equal-score heads (see the module docstring)."""
    if header.block_number > 0:
        sealed = read_seal(header)
        if sealed.kind is BlockKind.POLE:
            return keccak(sealed.release_digest_prefix + sealed.miner)
    return header.hash


class PoLeChainDB(ChainDB):
    @classmethod
    def _update_header_chain_gaps(
        cls,
        db: DatabaseAPI,
        persisting_header: BlockHeaderAPI,
        base_gaps: ChainGaps = None,
    ) -> GapInfo:
        """py-evm's gap bookkeeping, surviving a heavier but shorter branch.

        A PoLe sibling can beat a worse sibling that idle blocks already extended, so the
        canonical chain gets shorter: py-evm's gaps still cover the dropped heights, and
        persisting a new block there looks up a canonical header that no longer exists
        (HeaderNotFound: the idle miner then failed on every block). With no canonical
        header at that height there is no de-canonicalised block whose gap to reopen, and
        the header-level gaps did not change (py-evm returns before the lookup otherwise).
        """
        try:
            return super()._update_header_chain_gaps(db, persisting_header, base_gaps)
        except HeaderNotFound:
            gaps = base_gaps if base_gaps is not None else cls._get_header_chain_gaps(db)
            return GapChange.NoChange, gaps

    @classmethod
    def _persist_header_chain(
        cls,
        db: DatabaseAPI,
        headers: Iterable[BlockHeaderAPI],
        genesis_parent_hash: Hash32,
    ) -> HeaderChanges:
        headers = tuple(headers)
        changes = super()._persist_header_chain(db, headers, genesis_parent_hash)
        if changes != ((), ()) or not headers:
            return changes
        tip = headers[-1]
        head = cls._get_block_header_by_hash(db, cls._get_canonical_head_hash(db))
        if (
            tiebreak_key(tip) < tiebreak_key(head)
            and cls._get_score(db, tip.hash) == cls._get_score(db, head.hash)
        ):
            return cls._set_as_canonical_chain_head(db, tip, genesis_parent_hash)
        return changes


class PoLeChain(Chain):
    chain_id = CHAIN_ID
    chaindb_class = PoLeChainDB

    def import_block(
        self, block: BlockAPI, perform_validation: bool = True
    ) -> BlockImportResult:
        # The seal needs only the header and the parent state: check both parts before
        # executing the block, so a bad seal costs a peer's node no execution (py-evm checks
        # them only afterwards, in validate_block, where the memo of valid seals answers).
        if perform_validation and self.chaindb.header_exists(block.header.parent_hash):
            self.validate_seal(block.header)
            self.validate_chain_extension((block.header,))
        return super().import_block(block, perform_validation)

    def rewind_to(self, block_hash: Hash32) -> None:
        """Make an ancestor the head again (dev snapshots: ``evm_revert``).

        The abandoned blocks get score zero, so blocks built on the restored head win fork
        choice instead of tying with what was reverted, and their transactions stop being
        found by hash.
        """
        target = self.chaindb.get_block_header_by_hash(block_hash)
        head = self.get_canonical_head()
        with self.chaindb.db.atomic_batch() as db:
            while head.block_number > target.block_number:
                db[SchemaV1.make_block_hash_to_score_lookup_key(head.hash)] = rlp.encode(0)
                for tx_hash in PoLeChainDB._get_block_transaction_hashes(db, head):
                    lookup = SchemaV1.make_transaction_hash_to_block_lookup_key(tx_hash)
                    if lookup in db:
                        del db[lookup]
                head = self.chaindb.get_block_header_by_hash(head.parent_hash)
            PoLeChainDB._set_as_canonical_chain_head(db, target, GENESIS_PARENT_HASH)
