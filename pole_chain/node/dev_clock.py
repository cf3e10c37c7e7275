"""The dev node's clock: what timestamp the next block gets.

Contract tests travel in time (evm_increaseTime, evm_setNextBlockTimestamp, evm_mine with a
timestamp) the way they do on Hardhat and anvil. The clock is its own small object because
block production, PoLe sealing on a dev node, "pending" RPC reads and snapshots all read it;
on a non-dev node it is the wall clock (nothing moves it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from eth.abc import BlockHeaderAPI


@dataclass(frozen=True)
class ClockReading:
    """What a snapshot remembers of the clock."""

    offset: int
    floor: int
    next_timestamp: int | None


class DevClock:
    """Wall clock plus an offset, a floor and an optional exact next timestamp."""

    def __init__(self) -> None:
        self._offset = 0
        self._floor = 0  # evm_increaseTime: at least this far past the head it was called on
        self._next: int | None = None

    def next_timestamp(self, parent: BlockHeaderAPI) -> int:
        """The timestamp the next block on `parent` would get (no side effect)."""
        if self._next is not None:
            return self._next
        return max(parent.timestamp + 1, int(time.time()) + self._offset, self._floor)

    def timestamp_for(self, parent: BlockHeaderAPI, requested: int | None) -> tuple[int, bool]:
        """(timestamp of the next block, whether it was set explicitly); checks an explicit one."""
        explicit = requested if requested is not None else self._next
        if explicit is None:
            return self.next_timestamp(parent), False
        check_after(parent, explicit)
        return explicit, True

    def continue_from(self, timestamp: int) -> None:
        """After a block at an explicit `timestamp`, later blocks continue from it."""
        self._next = None
        self._offset = timestamp - int(time.time())

    def increase(self, seconds: int, head: BlockHeaderAPI) -> int:
        """Move forward by `seconds` (also past `head`); returns the total offset."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += seconds
        self._floor = max(self._floor, head.timestamp + seconds)
        return self._offset

    def set_next(self, timestamp: int, head: BlockHeaderAPI) -> None:
        check_after(head, timestamp)
        self._next = timestamp

    def reading(self) -> ClockReading:
        return ClockReading(self._offset, self._floor, self._next)

    def restore(self, reading: ClockReading) -> None:
        self._offset, self._floor, self._next = reading.offset, reading.floor, reading.next_timestamp


def check_after(parent: BlockHeaderAPI, timestamp: int) -> None:
    if timestamp <= parent.timestamp:
        raise ValueError(
            f"timestamp {timestamp} is not after the head block's timestamp {parent.timestamp}"
        )
