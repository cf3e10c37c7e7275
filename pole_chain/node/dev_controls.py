"""Dev-node controls, as Hardhat and anvil name them: mine now, snapshots, time travel.

A contract test suite mines on demand, rewinds to a snapshot after each test and moves the
clock; none of this exists on a non-dev node, where every method raises DevOnly.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from eth.abc import SignedTransactionAPI
from eth_typing import Hash32

from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.dev_clock import ClockReading, DevClock
from pole_chain.node.locking import NodeLock
from pole_chain.node.mempool import Mempool
from pole_chain.node.production import BlockProducer
from vm_hooks.chain import PoLeChain

log = logging.getLogger("pole.node")


class DevOnly(RuntimeError):
    """A dev-node control (snapshots, time travel, manual mining) called on a non-dev node."""


@dataclass(frozen=True)
class Snapshot:
    head_hash: Hash32
    clock: ClockReading
    pending: tuple[SignedTransactionAPI, ...]


class DevControls:
    """evm_mine, evm_snapshot/evm_revert, evm_increaseTime, evm_setNextBlockTimestamp."""

    def __init__(
        self,
        chain: PoLeChain,
        reader: ChainReader,
        mempool: Mempool,
        lock: NodeLock,
        clock: DevClock,
        producer: BlockProducer,
        *,
        dev: bool,
    ) -> None:
        self._chain = chain
        self._reader = reader
        self._mempool = mempool
        self._lock = lock
        self._clock = clock
        self._producer = producer
        self._dev = dev
        self._snapshots: dict[int, Snapshot] = {}
        self._snapshot_ids = itertools.count(1)

    def mine(self, count: int = 1, timestamp: int | None = None) -> list[Hash32]:
        """Seal `count` blocks from the mempool now; the first at `timestamp` if given."""
        self._require_dev("mine")
        if count < 1:
            raise ValueError(f"block count must be at least 1, got {count}")
        with self._lock.writing():
            return [
                self._producer.produce_dev_block(timestamp if index == 0 else None).block.hash
                for index in range(count)
            ]

    def snapshot(self) -> int:
        """Remember the head, the clock and the mempool; `revert(id)` returns to them."""
        self._require_dev("snapshot")
        with self._lock:
            snapshot_id = next(self._snapshot_ids)
            self._snapshots[snapshot_id] = Snapshot(
                head_hash=self._reader.head().hash,
                clock=self._clock.reading(),
                pending=tuple(self._mempool.transactions()),
            )
            return snapshot_id

    def revert(self, snapshot_id: int) -> bool:
        """Go back to snapshot `snapshot_id`; it and every later snapshot are used up.

        False if there is no such snapshot (never taken, or already used).
        """
        self._require_dev("revert")
        with self._lock.writing():
            snap = self._snapshots.get(snapshot_id)
            if snap is None:
                return False
            for later in [i for i in self._snapshots if i >= snapshot_id]:
                del self._snapshots[later]
            self._chain.rewind_to(snap.head_hash)
            self._clock.restore(snap.clock)
            self._mempool.clear()
            head = self._reader.head()
            self._mempool.readmit(
                snap.pending,
                self._reader.state_at(head),
                self._reader.child_header(head).gas_limit,
            )
            log.info("reverted to snapshot %d (head #%d)", snapshot_id, head.block_number)
            return True

    def increase_time(self, seconds: int) -> int:
        """Move the dev clock forward; returns the total offset in seconds.

        The next block is also at least `seconds` after the current head, even when
        automining has pushed block times ahead of the wall clock.
        """
        self._require_dev("increase_time")
        with self._lock:
            return self._clock.increase(seconds, self._reader.head())

    def set_next_block_timestamp(self, timestamp: int) -> None:
        """The next dev block gets exactly `timestamp` (later blocks continue from it)."""
        self._require_dev("set_next_block_timestamp")
        with self._lock:
            self._clock.set_next(timestamp, self._reader.head())

    def set_automine(self, enabled: bool) -> None:
        self._require_dev("set_automine")
        with self._lock:
            self._producer.automine = enabled

    def _require_dev(self, what: str) -> None:
        if not self._dev:
            raise DevOnly(f"{what} is only available on a dev node")
