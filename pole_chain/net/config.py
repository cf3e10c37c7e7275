"""Settings of one node's network, with the defaults a devnet on loopback wants."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pole_chain.net.peer_score import DEFAULT_BAN_SECONDS, DEFAULT_HALF_LIFE, DEFAULT_THRESHOLD

DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/0"
#: Matches pole_chain.node.blob_store.DEFAULT_MAX_BLOB_SIZE; the node passes its own.
DEFAULT_MAX_BLOB_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class NetworkConfig:
    """Where to listen, whom to dial, and the limits and timeouts of the exchanges.

    `datadir` holds the peer key (`datadir/net/peer.key`); None gives a fresh identity per
    run (tests). `listen` port 0 picks a free port; `Network.node_info()` reports the real
    one. `bootstrap` peers are full multiaddrs ending in /p2p/<peer id>; they, and peers
    added with `add_peer`, are redialled every `redial_interval` seconds while disconnected
    (geth's static peers), unless refused.
    """

    datadir: Path | None = None
    listen: str = DEFAULT_LISTEN
    bootstrap: tuple[str, ...] = ()
    mdns: bool = False
    request_timeout: float = 10.0
    dial_timeout: float = 5.0
    #: A gossip message's validation (the node importing a PoLe block) may take this long.
    validation_timeout: float = 60.0
    redial_interval: float = 5.0
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE
    score_threshold: float = DEFAULT_THRESHOLD
    score_half_life: float = DEFAULT_HALF_LIFE
    ban_seconds: float = DEFAULT_BAN_SECONDS
