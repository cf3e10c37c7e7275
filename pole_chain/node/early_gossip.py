"""Gossip that names an anchor block this node does not hold yet, held until that block comes.

An announcement, release, key request or key bundle can overtake its anchor block: a PoLe
block waits at each hop while its release and model are fetched and its model re-evaluated,
and the next task's messages, anchored at that block, travel at gossip speed behind it. Such
a message cannot be checked without its anchor, and ignoring it stopped it for good:
gossipsub relays only what a node accepts and the miner sends each message once, so a data
node behind that hop never heard of the solution and waited out its release timeout (7 of
20 PoLe intervals in bench.block_intervals). Held here instead, it is taken in once the
anchor is imported, through the same handler as before, and published by this node.

Bounded, since anybody can name a block that does not exist: at most MAX_HELD messages in
all and MAX_PER_ANCHOR per anchor, each for HOLD_S seconds; past those the oldest goes. A
peer filling it with messages for made-up anchors delays honest messages no more than the
old behaviour did (they fall back to the data node's release wait); it cannot make the node
accept anything, since every held message is checked in full when it is taken in.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pole_chain.net import Kind, Verdict

#: Messages held in all, and per anchor (the SolutionBook admits 64 announcements per anchor).
MAX_HELD = 512
MAX_PER_ANCHOR = 64
#: Seconds a message waits for its anchor: a PoLe block crosses a hop in seconds.
HOLD_S = 60.0


@dataclass(frozen=True)
class HeldMessage:
    """A gossip payload and the sink handler that takes it in once its anchor is here."""

    kind: Kind
    payload: bytes
    take: Callable[[bytes], Verdict]


class EarlyGossip:
    """Messages waiting for their anchor block, by anchor hash (thread-safe)."""

    def __init__(
        self,
        *,
        max_held: int = MAX_HELD,
        max_per_anchor: int = MAX_PER_ANCHOR,
        hold_s: float = HOLD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_held = max_held
        self._max_per_anchor = max_per_anchor
        self._hold_s = hold_s
        self._clock = clock
        # (anchor, payload) -> (message, expiry), oldest first
        self._held: OrderedDict[tuple[bytes, bytes], tuple[HeldMessage, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hold(self, anchor_hash: bytes, message: HeldMessage) -> None:
        """Keep `message` until `anchor_hash` is imported (a message held already is kept once)."""
        key = (bytes(anchor_hash), message.payload)
        with self._lock:
            self._expire()
            if key in self._held:
                return
            same_anchor = [k for k in self._held if k[0] == key[0]]
            if len(same_anchor) >= self._max_per_anchor:
                del self._held[same_anchor[0]]
            self._held[key] = (message, self._clock() + self._hold_s)
            while len(self._held) > self._max_held:
                self._held.popitem(last=False)

    def arrived(self, block_hash: bytes) -> list[HeldMessage]:
        """The messages waiting for `block_hash`, in arrival order, no longer held."""
        anchor = bytes(block_hash)
        with self._lock:
            self._expire()
            keys = [k for k in self._held if k[0] == anchor]
            return [self._held.pop(k)[0] for k in keys]

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._held)

    def _expire(self) -> None:
        now = self._clock()
        while self._held:
            key, (_, expiry) = next(iter(self._held.items()))
            if expiry > now:
                return
            del self._held[key]
