"""Background miners: blocks that appear without anyone asking.

A dev node with a block time seals a block (empty or not) every interval, as anvil's
--block-time does. A full node with mine_idle seals proof-of-work idle blocks with the pool's
transactions, whatever tasks are open: miners train against a task's anchor meanwhile, and
their PoLe blocks land on any descendant of it (docs/PROTOCOL.md, "Task anchor"). Each runs in its own daemon thread and stops
with the node; a failure is logged and retried, never fatal.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from eth_typing import Address
from eth_utils import ValidationError

from pole_chain.chain.block_production import (
    BlockProductionStopped,
    build_idle_block,
    earliest_idle_timestamp,
    persist,
    solve_idle_block,
)
from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.events import NodeEvents
from pole_chain.node.locking import NodeLock
from pole_chain.node.production import BlockProducer
from vm_hooks.chain import PoLeChain

log = logging.getLogger("pole.node")


class BackgroundMiners:
    """The interval miner (dev `block_time`) and the idle miner (`mine_idle`)."""

    def __init__(
        self,
        chain: PoLeChain,
        reader: ChainReader,
        lock: NodeLock,
        producer: BlockProducer,
        events: NodeEvents,
        *,
        coinbase: Address,
        block_time: float | None,
        mine_idle: bool,
    ) -> None:
        self._chain = chain
        self._reader = reader
        self._lock = lock
        self._producer = producer
        self._coinbase = coinbase
        self.block_time = block_time
        self.mine_idle = mine_idle
        self._stop = threading.Event()
        self._head_moved = threading.Event()
        self._threads: list[threading.Thread] = []
        events.subscribe_heads(lambda blocks: self._head_moved.set())

    def start(self) -> None:
        """Start the configured miners (none, interval, or idle)."""
        if self.block_time is not None:
            self._spawn("pole-interval-miner", self._run_interval_miner)
        if self.mine_idle:
            self._spawn("pole-idle-miner", self._run_idle_miner)

    def stop(self) -> None:
        """Stop the miners and wait for them (an idle search is abandoned)."""
        self._stop.set()
        self._head_moved.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run_interval_miner(self) -> None:
        assert self.block_time is not None
        deadline = time.monotonic() + self.block_time
        while not self._stop.wait(max(0.0, deadline - time.monotonic())):
            deadline += self.block_time
            try:
                with self._lock:
                    if self._lock.closed:
                        return
                    self._producer.produce_dev_block()
            except Exception:
                log.exception("interval mining failed; trying again next interval")

    def _run_idle_miner(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.seal_idle_block():
                    self._stop.wait(0.5)
            except ValidationError as exc:  # a rule this node's clock or head did not foresee
                log.debug("no idle block on this head: %s", exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("idle mining failed; retrying in a second")
                self._stop.wait(1.0)

    def seal_idle_block(self) -> bool:
        """Build an idle block under the lock, search its nonce without it, then import.

        Same steps as block_production.produce_idle_block, split so that RPC reads are not
        blocked for the seconds the proof of work takes. The search is abandoned when the
        head moves (a block arrived) or the node stops. True if a block was sealed.
        """
        with self._lock:
            if self._lock.closed:
                return False
            parent = self._reader.head()
            timestamp = earliest_idle_timestamp(self._chain, None)
            if timestamp > time.time():
                return False  # a PoLe block's reveal window is still open
            produced, work = build_idle_block(
                self._chain,
                self._producer.candidates(parent),
                timestamp=timestamp,
                coinbase=self._coinbase,
                parent=parent,
            )
            self._head_moved.clear()
        try:
            solve_idle_block(produced, work, self._head_moved)
        except BlockProductionStopped:
            return False
        with self._lock:
            if self._lock.closed or self._reader.head().hash != parent.hash:
                return False
            persist(self._chain, produced)
            self._producer.after_produced(produced)
            return True
