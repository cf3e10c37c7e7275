"""PoLe sealing: a miner's seal (pole_sealBlock) becomes a block on the parent it names.

Competing miners seal siblings of one parent, so the block is built on the requested parent,
not necessarily the head; pool transactions go in only when that parent is the head. The
block passes the chain's full validation (the model verifier included) before it is stored,
and it becomes the head only if it wins fork choice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from eth.exceptions import HeaderNotFound
from eth_typing import Address, Hash32
from eth_utils import ValidationError, encode_hex

from pole_chain.chain.block_production import produce_pole_block
from pole_chain.node.block_import import BlockRejected, NodeBug
from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.dev_clock import DevClock
from pole_chain.node.locking import NodeLock
from pole_chain.node.production import BlockProducer
from vm_hooks.chain import PoLeChain

log = logging.getLogger("pole.node")


@dataclass(frozen=True)
class SealRequest:
    """What a miner supplies to seal a PoLe block (see block_production.produce_pole_block)."""

    coinbase: Address
    task_id: int
    model_commitment: bytes
    train_bps: int
    test_bps: int
    release_digest: bytes
    parent_hash: Hash32 | None = None  # None: the current head


class PoLeSealer:
    """Builds, verifies and imports PoLe blocks from miners' seals."""

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

    def submit(self, seal_request: SealRequest) -> Hash32:
        """Build a PoLe block on the head (or `seal_request.parent_hash`), seal it, import it.

        Returns its hash; raises BlockRejected.
        """
        request = seal_request
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
                produced = produce_pole_block(
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
            except ValidationError as exc:
                raise BlockRejected(f"PoLe block refused: {exc}") from exc
            except Exception as exc:  # no rule raises this: a bug here, not a bad seal
                log.error("sealing a PoLe block hit a node bug", exc_info=True)
                raise NodeBug(
                    f"internal error sealing a PoLe block: {type(exc).__name__}: {exc}"
                ) from exc
            if produced.new_canonical:  # it won fork choice (a sibling may have been dropped)
                self._producer.after_produced(produced)
            return produced.block.hash
