"""Penalty points per peer, decaying with time; past a threshold the peer is dropped.

py-libp2p 0.8.1's gossipsub `PeerScorer` only gates publishing, gossip and grafting by
score; it never disconnects anyone, and it does not see offences on our own request/response
protocols (wrong blob bytes, malformed range requests). So the network keeps this small
score of its own: every offence adds points, points halve every `half_life` seconds (an
honest peer that once relayed a stale block is forgiven), and a peer whose points reach
`threshold` is disconnected and refused for `ban_seconds`.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Offence(enum.Enum):
    """What a peer did wrong, and its weight in points.

    Each member's value is its name and its weight a separate field: offences of equal
    weight would otherwise be aliases of one member, and the log would name the wrong one.
    """

    INVALID_GOSSIP = ("invalid_gossip", 25.0)  # the sink rejected it: bad signature, invalid block
    MALFORMED_GOSSIP = ("malformed_gossip", 50.0)  # not an envelope of the topic's kind and size
    MALFORMED_REQUEST = ("malformed_request", 25.0)  # a range or blob request too big or unparsed
    WRONG_BLOB = ("wrong_blob", 100.0)  # bytes whose keccak is not the digest asked for
    BAD_RESPONSE = ("bad_response", 25.0)  # a response that does not parse, or too many items
    WRONG_GENESIS = ("wrong_genesis", 100.0)  # a peer of another chain
    INVALID_CHAIN = ("invalid_chain", 50.0)  # sync: headers or blocks that fail to parse or check

    @property
    def points(self) -> float:
        return self.value[1]


DEFAULT_THRESHOLD = 100.0
DEFAULT_HALF_LIFE = 600.0
DEFAULT_BAN_SECONDS = 3600.0


@dataclass
class _Points:
    value: float = 0.0
    at: float = 0.0


@dataclass
class PeerScore:
    """Decaying penalty points keyed by peer id (a string); not thread-safe by design.

    It lives on the network's trio thread, like everything that touches the host.
    """

    threshold: float = DEFAULT_THRESHOLD
    half_life: float = DEFAULT_HALF_LIFE
    ban_seconds: float = DEFAULT_BAN_SECONDS
    clock: Callable[[], float] = time.monotonic
    _points: dict[str, _Points] = field(default_factory=dict)
    _banned_until: dict[str, float] = field(default_factory=dict)

    def penalise(self, peer_id: str, offence: Offence) -> bool:
        """Add the offence's points; True when the peer has now crossed the threshold."""
        now = self.clock()
        points = self._points.setdefault(peer_id, _Points(at=now))
        points.value = self._decayed(points, now) + offence.points
        points.at = now
        if points.value >= self.threshold:
            self._banned_until[peer_id] = now + self.ban_seconds
            return True
        return False

    def points(self, peer_id: str) -> float:
        """Current penalty points (0 for a peer never penalised)."""
        points = self._points.get(peer_id)
        return 0.0 if points is None else self._decayed(points, self.clock())

    def is_banned(self, peer_id: str) -> bool:
        """Whether the peer crossed the threshold less than `ban_seconds` ago."""
        until = self._banned_until.get(peer_id)
        if until is None:
            return False
        if self.clock() >= until:
            del self._banned_until[peer_id]
            self._points.pop(peer_id, None)
            return False
        return True

    def _decayed(self, points: _Points, now: float) -> float:
        return points.value * math.pow(0.5, (now - points.at) / self.half_life)
