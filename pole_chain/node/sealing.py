"""PoLe sealing, first half: a miner's seal request (pole_buildBlock) becomes an unsigned block.

A PoLe block must be signed by its coinbase over the rest of its header (vm_hooks/seal.py),
and the node does not hold the miner's key, so sealing takes two calls: the node builds the
block and answers it with the hash to sign; the miner checks what it is about to sign, signs
it and hands the signed block to pole_submitBlock, which imports it with full validation
(BlockImporter). Nothing is stored by the first half.

Competing miners seal siblings of one parent, so the block is built on the requested parent,
not necessarily the head; pool transactions go in only when that parent is the head. The
seal is checked against the parent state and the blobs (task selection, model verifier)
before the block is answered, so a seal the node would refuse is refused before it is signed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import rlp
from eth.abc import BlockAPI
from eth.exceptions import HeaderNotFound
from eth_typing import Address, Hash32
from eth_utils import ValidationError, encode_hex

from pole_chain.chain.block_production import build_pole_block
from pole_chain.node.block_import import BlockRejected, NodeBug
from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.dev_clock import DevClock
from pole_chain.node.locking import NodeLock
from pole_chain.node.production import BlockProducer
from vm_hooks.chain import PoLeChain
from vm_hooks.seal import signing_hash

log = logging.getLogger("pole.node")


@dataclass(frozen=True)
class SealRequest:
    """What a miner supplies to seal a PoLe block (see block_production.build_pole_block)."""

    coinbase: Address
    task_id: int
    model_commitment: bytes
    train_bps: int
    test_bps: int
    release_digest: bytes
    parent_hash: Hash32 | None = None  # None: the current head


@dataclass(frozen=True)
class BuiltBlock:
    """An unsigned PoLe block, as pole_buildBlock answers it."""

    block: BlockAPI

    @property
    def encoded(self) -> bytes:
        return rlp.encode(self.block)

    @property
    def signing_hash(self) -> Hash32:
        """What the coinbase signs (the miner recomputes it from the header it checked)."""
        return signing_hash(self.block.header)


class PoLeSealer:
    """Builds unsigned PoLe blocks from miners' seal requests and checks their seals."""

    def __init__(
        self,
        chain: PoLeChain,
        reader: ChainReader,
        lock: NodeLock,
        clock: DevClock,
        producer: BlockProducer,
        *,
        dev: bool,
    ) -> None:
        self._chain = chain
        self._reader = reader
        self._lock = lock
        self._clock = clock
        self._producer = producer
        self._dev = dev

    def build(self, request: SealRequest) -> BuiltBlock:
        """The unsigned PoLe block on the head (or `request.parent_hash`), its seal checked
        against the parent state and the blobs. Raises BlockRejected (NodeBug for a bug)."""
        with self._lock.writing():
            head = self._reader.head()
            try:
                parent = (
                    self._reader.header(request.parent_hash)
                    if request.parent_hash is not None
                    else head
                )
            except HeaderNotFound:
                raise BlockRejected(f"unknown parent {encode_hex(request.parent_hash)}") from None
            transactions = self._producer.candidates(parent) if parent.hash == head.hash else []
            try:
                produced = build_pole_block(
                    self._chain,
                    transactions,
                    coinbase=request.coinbase,
                    task_id=request.task_id,
                    model_commitment=request.model_commitment,
                    train_bps=request.train_bps,
                    test_bps=request.test_bps,
                    release_digest=request.release_digest,
                    parent=parent,
                    # dev nodes keep their clock controls (evm_increaseTime) for PoLe blocks too
                    timestamp=self._clock.next_timestamp(parent) if self._dev else None,
                )
                # The signature is not there yet; every rule that needs the parent is.
                self._chain.validate_chain_extension((produced.block.header,))
            except ValidationError as exc:
                raise BlockRejected(f"PoLe block refused: {exc}") from exc
            except Exception as exc:  # no rule raises this: a bug here, not a bad seal
                log.error("building a PoLe block hit a node bug", exc_info=True)
                raise NodeBug(
                    f"internal error building a PoLe block: {type(exc).__name__}: {exc}"
                ) from exc
            return BuiltBlock(produced.block)
