"""`Network`: the thread-safe face of the peer-to-peer layer, the one object the node holds.

py-libp2p runs on trio; the node, its HTTP server and its miners are plain threads. The
network therefore owns one thread running one trio loop (`trio.run`), and every crossing
goes through trio's own thread bridge:
- node -> network: each public method here calls `trio.from_thread.run(..., trio_token=)`,
  which runs the coroutine on the loop and blocks the calling thread until it returns (or
  re-raises what it raised). A bounded `timeout` keeps a node thread from waiting forever.
- network -> node: the NodeSink and ChainView callbacks run through `trio.to_thread`, on
  worker threads, so the loop never blocks on the node's lock or a block import.
No queue of our own, no second event loop, no polling. See docs/NETWORK.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
from libp2p.peer.id import ID

from pole_chain.net import wire
from pole_chain.net.config import NetworkConfig
from pole_chain.net.envelope import Kind
from pole_chain.net.host import PoLeHost
from pole_chain.net.interfaces import ChainStatus, ChainView, NodeInfo, NodeSink, PeerRecord
from pole_chain.net.peer_score import Offence

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_CALL_TIMEOUT = 30.0


class NetworkError(Exception):
    """The network did not start, has stopped, or a call timed out."""


class Network:
    """One node's libp2p host on its own trio thread, driven by blocking calls."""

    def __init__(self, config: NetworkConfig, chain: ChainView, sink: NodeSink) -> None:
        self._config = config
        self._chain = chain
        self._host = PoLeHost(config, chain, sink)
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> "Network":
        """Start the network thread; return once the host listens and has joined the topics."""
        self._thread = threading.Thread(target=self._main, name="pole-net", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise NetworkError(f"the network did not start within {timeout} s")
        if self._failure is not None:
            raise NetworkError(f"the network failed to start: {self._failure}") from self._failure
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and end the network thread."""
        if self._thread is None or not self._thread.is_alive() or self._token is None:
            return
        try:
            trio.from_thread.run_sync(self._host.stop, trio_token=self._token)
        except trio.RunFinishedError:
            pass
        self._thread.join(timeout)

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as error:  # reported to start(), or logged if it was running
            self._failure = error
            if self._started.is_set():
                logger.exception("the network thread died")
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            await nursery.start(self._host_run)
            self._started.set()

    async def _host_run(self, *, task_status: trio.TaskStatus[None]) -> None:
        await self._host.run(task_status=task_status)

    # --- identity and peers (admin_* and net_peerCount) --------------------------------

    @property
    def peer_id(self) -> str:
        """This node's peer id (base58), stable across restarts with the same datadir."""
        return self._host.peer_id

    def node_info(self) -> NodeInfo:
        """admin_nodeInfo: id, dialable addresses (real port), protocols, head."""
        addrs = self._call_sync(self._host.addrs)
        protocols = tuple(
            [wire.STATUS_PROTOCOL, wire.HEADERS_PROTOCOL, wire.BLOCKS_PROTOCOL, wire.BLOB_PROTOCOL,
             wire.BLOCK_DATA_PROTOCOL]
        )
        return NodeInfo(self.peer_id, tuple(addrs), protocols, self._chain.head())

    def peers(self) -> list[PeerRecord]:
        """admin_peers: every connected peer with its addresses, direction, score, status."""
        return self._call_sync(self._host.peers)

    def peer_count(self) -> int:
        """net_peerCount."""
        return len(self.peers())

    def add_peer(self, address: str, timeout: float = DEFAULT_CALL_TIMEOUT) -> str:
        """admin_addPeer: dial a full multiaddr, keep it as a static peer; its peer id."""
        return self._call(self._host.add_peer, address, timeout=timeout)

    def remove_peer(self, peer_id: str) -> bool:
        """admin_removePeer: disconnect and forget a static peer; True if it was connected."""
        return self._call(self._host.remove_peer, peer_id)

    def refuse_peer(self, peer_id: str) -> None:
        """Disconnect a peer and refuse it both ways until `allow_peer` (partition tests)."""
        self._call(self._host.refuse_peer, peer_id)

    def allow_peer(self, peer_id: str) -> None:
        """Lift `refuse_peer`."""
        self._call_sync(self._host.allow_peer, peer_id)

    def refused_peers(self) -> set[str]:
        """The deny list."""
        return self._call_sync(lambda: set(self._host.refused))

    def report_peer(self, peer_id: str, offence: Offence) -> None:
        """Score an offence the node found in what a peer served (sync's headers and blocks
        are checked by the node, not here): the same points and ban as the network's own."""
        self._call_sync(self._host.penalise, peer_id, offence)

    # --- gossip ------------------------------------------------------------------------

    def publish(self, kind: Kind, payload: bytes) -> None:
        """Gossip a payload of `kind` the node took in (the typed methods below name theirs)."""
        self._call(self._host_publish, kind, payload)

    def publish_transaction(self, raw: bytes) -> None:
        """Gossip a transaction the node admitted."""
        self.publish(Kind.TRANSACTION, raw)

    def publish_block(self, rlp_block: bytes) -> None:
        """Gossip a block the node imported (its model travels as a blob, by digest)."""
        self.publish(Kind.BLOCK, rlp_block)

    def publish_announcement(self, message: bytes) -> None:
        """Gossip a verified SolutionAnnouncement."""
        self.publish(Kind.ANNOUNCEMENT, message)

    def publish_release(self, message: bytes) -> None:
        """Gossip a verified Release."""
        self.publish(Kind.RELEASE, message)

    def publish_key_request(self, message: bytes) -> None:
        """Gossip a verified KeyRequest."""
        self.publish(Kind.KEY_REQUEST, message)

    def publish_key_bundle(self, message: bytes) -> None:
        """Gossip a verified KeyBundle."""
        self.publish(Kind.KEY_BUNDLE, message)

    def publish_model(self, message: bytes) -> None:
        """Gossip a revealed model a release admits (pole_chain.node.model_gossip)."""
        self.publish(Kind.MODEL, message)

    async def _host_publish(self, kind: Kind, payload: bytes) -> None:
        assert self._host.gossip is not None
        await self._host.gossip.publish(kind, payload)

    # --- requests ----------------------------------------------------------------------

    def fetch_blob(self, digest: bytes, timeout: float = 120.0) -> bytes | None:
        """The blob with this keccak digest from the first peer that has it, or None."""
        return self._call(self._fetch_blob, digest, timeout=timeout)

    async def _fetch_blob(self, digest: bytes) -> bytes | None:
        return await self._host.exchange.fetch_blob(digest, self._host.ranked_peers())

    def fetch_block_data(
        self,
        release_prefix: bytes,
        commitment: bytes,
        matches: Callable[[bytes, bytes], bool],
        timeout: float = 120.0,
    ) -> tuple[bytes, bytes] | None:
        """(release, model) of a PoLe block from the first peer with both, checked; or None.

        `matches(release, model)` runs on the network thread: it must be quick and not raise.
        """
        data = self._call(
            self._fetch_block_data, release_prefix, commitment, matches, timeout=timeout
        )
        return None if data is None else (data.release, data.model)

    async def _fetch_block_data(
        self, release_prefix: bytes, commitment: bytes, matches: Callable[[bytes, bytes], bool]
    ) -> wire.BlockData | None:
        return await self._host.exchange.fetch_block_data(
            release_prefix, commitment, matches, self._host.ranked_peers()
        )

    def statuses(self) -> dict[str, ChainStatus]:
        """The last status each connected peer sent (handshake or request_status)."""
        return self._call_sync(lambda: dict(self._host.statuses))

    def request_status(self, peer_id: str) -> ChainStatus:
        """A fresh status handshake with one peer."""
        return self._call(self._host.exchange.status, _peer(peer_id))

    def request_headers(self, peer_id: str, start: int, count: int) -> list[bytes]:
        """Up to `count` RLP headers from `start` (at most wire.MAX_HEADERS_PER_REQUEST)."""
        return self._call(self._host.exchange.headers, _peer(peer_id), start, count)

    def request_blocks(self, peer_id: str, start: int, count: int) -> list[bytes]:
        """Up to `count` RLP blocks from `start` (at most wire.MAX_BLOCKS_PER_REQUEST)."""
        return self._call(self._host.exchange.blocks, _peer(peer_id), start, count)

    # --- the thread bridge -------------------------------------------------------------

    def _call(
        self, function: Callable[..., Awaitable[T]], *args: object,
        timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> T:
        async def bounded() -> T:
            with trio.fail_after(timeout):
                return await function(*args)

        try:
            return trio.from_thread.run(bounded, trio_token=self._running_token())
        except trio.TooSlowError as error:
            raise NetworkError(f"{function.__name__} timed out after {timeout} s") from error
        except trio.RunFinishedError as error:
            raise NetworkError("the network has stopped") from error

    def _call_sync(self, function: Callable[..., T], *args: object) -> T:
        try:
            return trio.from_thread.run_sync(function, *args, trio_token=self._running_token())
        except trio.RunFinishedError as error:
            raise NetworkError("the network has stopped") from error

    def _running_token(self) -> trio.lowlevel.TrioToken:
        if self._token is None or not self._started.is_set() or self._failure is not None:
            raise NetworkError("the network is not running")
        return self._token


def _peer(peer_id: str) -> ID:
    return ID.from_base58(peer_id)
