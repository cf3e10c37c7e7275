"""Block import: RLP blocks built elsewhere (pole_submitBlock, later the peer network).

A block from outside is decoded for its own fork, refused while it is too far in the future
by this node's clock, refused with a clear message when its parent is unknown, then given to
py-evm's full validation (the PoLe seal checks included). Only then does the head move.
"""
from __future__ import annotations

import logging
import time

import rlp
from eth.abc import BlockAPI
from eth.exceptions import HeaderNotFound
from eth_typing import Hash32
from eth_utils import ValidationError, encode_hex

from pole_chain.node.block_log import log_pole_block
from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.locking import NodeLock
from pole_chain.node.production import BlockProducer
from vm_hooks.chain import PoLeChain

log = logging.getLogger("pole.node")

#: Seconds a block from outside may be ahead of this node's clock.
MAX_FUTURE_DRIFT = 15


class BlockRejected(Exception):
    """A block from outside the node failed to decode or to validate; the message says why."""


class NodeBug(RuntimeError):
    """Validating a block raised something no PoLe or py-evm rule raises: a bug in this node.

    Not a verdict on the block: it is neither stored nor remembered as invalid (a retry after
    the fix imports it), it is logged once with its traceback, and the RPC layer answers an
    internal error rather than "invalid block", so a bug cannot split nodes on a valid block.
    """


class BlockImporter:
    """Validates and stores blocks from outside the node."""

    def __init__(
        self,
        chain: PoLeChain,
        reader: ChainReader,
        lock: NodeLock,
        producer: BlockProducer,
        *,
        dev: bool,
    ) -> None:
        self._chain = chain
        self._reader = reader
        self._lock = lock
        self._producer = producer
        self._dev = dev

    def import_block(self, rlp_bytes: bytes) -> Hash32:
        """Validate and import an RLP-encoded block; returns its hash.

        Importing a block already stored is a no-op. Raises BlockRejected.
        """
        with self._lock.writing():
            return self.import_decoded(self.decode(rlp_bytes))

    def import_decoded(self, block: BlockAPI) -> Hash32:
        """`import_block` for a block `decode` returned under the same hold of the node lock
        (sync and gossip classify a block before importing it; decoding it again cost a
        twentieth of a dev block's import)."""
        with self._lock.writing():
            if self._reader.has_header(block.hash):
                return block.hash
            self._check_timely_with_parent(block)
            try:
                result = self._chain.import_block(block)
            except ValidationError as exc:
                raise BlockRejected(f"invalid block #{block.number}: {exc}") from exc
            except Exception as exc:  # no rule raises this: a bug here, not a bad block
                log.error("importing block #%d hit a node bug", block.number, exc_info=True)
                raise NodeBug(
                    f"internal error importing block #{block.number}: {type(exc).__name__}: {exc}"
                ) from exc
            self._producer.after_new_head(result.new_canonical_blocks, result.old_canonical_blocks)
            logged = log_pole_block(
                log, block, result.new_canonical_blocks, result.old_canonical_blocks,
                self._reader.head(),
            )
            if not logged:
                log.info(
                    "imported block #%d %s%s",
                    block.number,
                    encode_hex(block.hash),
                    "" if result.new_canonical_blocks else " (not canonical)",
                )
            return block.hash

    def _check_timely_with_parent(self, block: BlockAPI) -> None:
        ahead = block.header.timestamp - time.time()
        if not self._dev and ahead > MAX_FUTURE_DRIFT:
            # Node policy, not consensus (it depends on the local clock): a block from the
            # future could expire tasks early and stack idle blocks cheaply. Refused for
            # now, acceptable once its time has come (as geth does).
            raise BlockRejected(
                f"block #{block.number} is {ahead:.0f} s in the future (limit "
                f"{MAX_FUTURE_DRIFT} s); try again later"
            )
        try:
            self._reader.header(block.header.parent_hash)
        except HeaderNotFound:
            raise BlockRejected(
                f"unknown parent {encode_hex(block.header.parent_hash)} of block "
                f"#{block.number} {encode_hex(block.hash)}"
            ) from None

    def check_header_seal(self, block: BlockAPI) -> None:
        """The seal rules its header shows on its own (signature, proof of work), which
        import checks first too; BlockRejected when they fail. Reads no chain state."""
        try:
            self._chain.validate_seal(block.header)
        except ValidationError as exc:
            raise BlockRejected(f"invalid block #{block.number}: {exc}") from exc

    def decode(self, rlp_bytes: bytes) -> BlockAPI:
        """The block in `rlp_bytes`, decoded for its own fork; BlockRejected if it does not."""
        def decode(number: int) -> BlockAPI:
            block_class = self._chain.get_vm_class_for_block_number(number).get_block_class()
            return rlp.decode(bytes(rlp_bytes), sedes=block_class)

        try:
            block = decode(self._reader.head().block_number + 1)
            if block.number < 0:
                raise ValueError("negative block number")
            expected = self._chain.get_vm_class_for_block_number(block.number).get_block_class()
            if not isinstance(block, expected):
                block = decode(block.number)
        except Exception as exc:
            raise BlockRejected(f"cannot decode block: {type(exc).__name__}: {exc}") from exc
        if block.number == 0:
            raise BlockRejected("a genesis block cannot be imported")
        return block
