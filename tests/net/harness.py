"""Real libp2p hosts on 127.0.0.1 for the network tests: chain views, a recording sink, waits.

`ChainFixture` is a ChainView over a real in-memory PoLe dev chain, and the adapter the node
is expected to write for itself (canonical headers and blocks as RLP, score from py-evm's
header database). `DictChain` is a ChainView with fixed answers, for tests about the
network rather than the chain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import rlp
from eth.db.atomic import AtomicDB
from eth_typing import BlockNumber
from eth_utils import keccak

from pole_chain.chain.block_production import produce_dev_block
from pole_chain.chain.opening import open_chain
from pole_chain.devnet.probes import wait_until
from pole_chain.net import ChainStatus, Network, NetworkConfig, Verdict

T = TypeVar("T")
WAIT = 15.0


class ChainFixture:
    """ChainView over an in-memory dev chain with `blocks` dev blocks on top of genesis."""

    def __init__(self, blocks: int) -> None:
        self.chain = open_chain(AtomicDB(), dev=True)
        for _ in range(blocks):
            produce_dev_block(self.chain, [])
        self.blobs: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def genesis_hash(self) -> bytes:
        with self._lock:
            return self.chain.get_canonical_block_header_by_number(BlockNumber(0)).hash

    def head(self) -> ChainStatus:
        with self._lock:
            head = self.chain.get_canonical_head()
            genesis = self.chain.get_canonical_block_header_by_number(BlockNumber(0))
            return ChainStatus(genesis.hash, head.hash, head.block_number,
                               self.chain.get_score(head.hash))

    def headers(self, start: int, count: int) -> Sequence[bytes]:
        with self._lock:
            last = min(start + count, self.chain.get_canonical_head().block_number + 1)
            return [rlp.encode(self.chain.get_canonical_block_header_by_number(BlockNumber(n)))
                    for n in range(start, last)]

    def blocks(self, start: int, count: int) -> Sequence[bytes]:
        with self._lock:
            last = min(start + count, self.chain.get_canonical_head().block_number + 1)
            return [rlp.encode(self.chain.get_canonical_block_by_number(BlockNumber(n)))
                    for n in range(start, last)]

    def blob(self, digest: bytes) -> bytes | None:
        return self.blobs.get(digest)

    def block_data(self, release_prefix: bytes, commitment: bytes) -> tuple[bytes, bytes]:
        return b"", b""  # a dev chain has no PoLe blocks


class DictChain:
    """A ChainView with a fixed head and a blob table; `lie` serves wrong bytes."""

    def __init__(self, genesis: bytes = b"\x01" * 32, lie: bool = False) -> None:
        self._genesis = genesis
        self.blobs: dict[bytes, bytes] = {}
        self.models: dict[bytes, bytes] = {}
        self.lie = lie

    def genesis_hash(self) -> bytes:
        return self._genesis

    def head(self) -> ChainStatus:
        return ChainStatus(self._genesis, b"\x02" * 32, 7, 7000)

    def headers(self, start: int, count: int) -> Sequence[bytes]:
        return [rlp.encode([n]) for n in range(start, min(start + count, 8))]

    def blocks(self, start: int, count: int) -> Sequence[bytes]:
        return self.headers(start, count)

    def blob(self, digest: bytes) -> bytes | None:
        data = self.blobs.get(digest)
        if data is not None and self.lie:
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    def block_data(self, release_prefix: bytes, commitment: bytes) -> tuple[bytes, bytes]:
        """The release whose digest starts with the prefix, and the model `commitment` keys."""
        release = next((d for k, d in self.blobs.items() if k.startswith(release_prefix)), b"")
        return release, self.models.get(commitment, b"")

    def put(self, data: bytes) -> bytes:
        self.blobs[keccak(data)] = data
        return keccak(data)


class RecordingSink:
    """A NodeSink that records every call; payloads starting with b"bad" are rejected."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes, float]] = []
        self.statuses: dict[str, ChainStatus] = {}
        self._changed = threading.Condition()

    def on_transaction(self, raw: bytes) -> Verdict:
        return self._take("tx", raw)

    def on_block(self, rlp_block: bytes) -> Verdict:
        return self._take("block", rlp_block)

    def on_announcement(self, message: bytes) -> Verdict:
        return self._take("announcement", message)

    def on_release(self, message: bytes) -> Verdict:
        return self._take("release", message)

    def on_key_request(self, message: bytes) -> Verdict:
        return self._take("key-request", message)

    def on_key_bundle(self, message: bytes) -> Verdict:
        return self._take("key-bundle", message)

    def on_model(self, message: bytes) -> Verdict:
        return self._take("model", message)

    def on_peer_status(self, peer_id: str, status: ChainStatus) -> None:
        with self._changed:
            self.statuses[peer_id] = status
            self._changed.notify_all()

    def payloads(self, kind: str | None = None) -> list[bytes]:
        with self._changed:
            return [p for k, p, _ in self.received if kind is None or k == kind]

    def wait_for(self, predicate: Callable[["RecordingSink"], bool], timeout: float = WAIT) -> None:
        """Block until predicate(self) holds (re-checked on every call); fail after timeout."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(f"sink condition not met within {timeout} s")

    def arrival(self, payload: bytes) -> float:
        with self._changed:
            return next(t for _, p, t in self.received if p == payload)

    def _take(self, kind: str, payload: bytes) -> Verdict:
        with self._changed:
            self.received.append((kind, payload, time.perf_counter()))
            self._changed.notify_all()
        return Verdict.REJECT if payload.startswith(b"bad") else Verdict.ACCEPT


def start_network(chain: object, sink: RecordingSink | None = None, **config: object) -> Network:
    """A started Network on a free loopback port."""
    return Network(NetworkConfig(**config), chain, sink or RecordingSink()).start()  # type: ignore[arg-type]


def eventually(predicate: Callable[[], T], timeout: float = WAIT) -> T:
    """Re-check `predicate` until it returns something truthy; fail after `timeout` s.

    For conditions only observable by asking (who is connected): the wait between checks
    is an Event's bounded wait, never a fixed sleep the test depends on.
    """
    return wait_until(predicate, timeout, pause_s=0.02)


def connected(a: Network, b: Network) -> bool:
    """Whether a lists b as a peer and b lists a."""
    return (b.peer_id in {p.peer_id for p in a.peers()}
            and a.peer_id in {p.peer_id for p in b.peers()})


def link(a: Network, b: Network) -> None:
    """Dial b from a and wait until both sides see the connection."""
    a.add_peer(b.node_info().addrs[0])
    eventually(lambda: connected(a, b))


def meshed(a: Network, b: Network) -> bool:
    """Whether a and b have grafted each other into the gossipsub mesh of every topic.

    Test-only peek at the host: before the mesh forms (one heartbeat after connecting) a
    relay would not yet forward to the other.
    """
    def grafted(x: Network, y: Network) -> bool:
        host = x._host
        assert host.gossip is not None
        mesh = host.router.mesh
        return all(
            any(str(peer) == y.peer_id for peer in mesh.get(topic, ()))
            for topic in host.gossip.topics.values()
        )

    return a._call_sync(lambda: grafted(a, b)) and b._call_sync(lambda: grafted(b, a))
