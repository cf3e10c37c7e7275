"""The trio side of the network: one libp2p host with PoLe's gossip and request protocols.

Everything here runs on the network thread's trio loop (see docs/NETWORK.md, "Threading");
`pole_chain.net.network.Network` is the thread-safe face the node uses. The host owns the
peer policy: static peers (bootstrap and `add_peer`) are redialled while disconnected, a
refused or banned peer is disconnected as soon as it connects, and every new connection
starts with a status handshake that drops peers of another genesis.
"""

from __future__ import annotations

import logging

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub, get_content_addressed_msg_id
from libp2p.request_response import RequestResponseError
from libp2p.tools.anyio_service import background_trio_service

from pole_chain.net import wire
from pole_chain.net.config import NetworkConfig
from pole_chain.net.exchange import Exchange
from pole_chain.net.gossip import Gossip
from pole_chain.net.identity import load_or_create_peer_key
from pole_chain.net.interfaces import ChainStatus, ChainView, NodeSink, PeerRecord
from pole_chain.net.peer_score import Offence, PeerScore

logger = logging.getLogger(__name__)

#: gossipsub mesh degree (go-libp2p's defaults) and a 1 s heartbeat, so a mesh forms
#: within a second of connecting instead of the library's 120 s default.
MESH_DEGREE, MESH_LOW, MESH_HIGH = 6, 4, 12
HEARTBEAT_SECONDS = 1
#: How often a node checks that zeroconf still holds its mDNS service (see _keep_mdns_registered).
MDNS_RECHECK_S = 2.0


class PeerRefusedError(Exception):
    """add_peer of a peer that is refused or banned."""


class PoLeHost:
    """A libp2p host, its gossipsub and the PoLe protocols, plus the peer policy."""

    def __init__(self, config: NetworkConfig, chain: ChainView, sink: NodeSink) -> None:
        self.config = config
        self._chain = chain
        self._sink = sink
        self.host = new_host(
            key_pair=load_or_create_peer_key(config.datadir),
            enable_mDNS=config.mdns,
            connection_config=ConnectionConfig(dial_timeout=config.dial_timeout),
        )
        _disable_auto_connector(self.host)
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
            degree=MESH_DEGREE,
            degree_low=MESH_LOW,
            degree_high=MESH_HIGH,
            heartbeat_interval=HEARTBEAT_SECONDS,
            spam_protection_enabled=False,  # see pole_chain/net/gossip.py
        )
        self.pubsub = Pubsub(
            self.host,
            self.router,
            msg_id_constructor=get_content_addressed_msg_id,
            validation_cache_ttl=0,  # see pole_chain/net/gossip.py
            validation_timeout=config.validation_timeout,
        )
        self.score = PeerScore(
            threshold=config.score_threshold,
            half_life=config.score_half_life,
            ban_seconds=config.ban_seconds,
        )
        self.exchange = Exchange(
            self.host, chain, self.penalise, self._record_status,
            timeout=config.request_timeout, max_blob_size=config.max_blob_size,
        )
        self.gossip: Gossip | None = None
        self.refused: set[str] = set()
        self.static: dict[str, PeerInfo] = {}
        self.statuses: dict[str, ChainStatus] = {}
        self._nursery: trio.Nursery | None = None
        self._stopping = trio.Event()

    @property
    def peer_id(self) -> str:
        """This host's peer id in base58."""
        return str(self.host.get_id())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, join the topics, dial the bootstrap peers; return after `stop()`."""
        genesis_hash = await trio.to_thread.run_sync(self._chain.genesis_hash)
        self.gossip = Gossip(self.pubsub, self.router, genesis_hash, self._sink, self.penalise)
        self.exchange.register()
        self.host.get_network().register_notifee(_PeerPolicy(self))
        listen = [multiaddr.Multiaddr(self.config.listen)]
        async with (
            self.host.run(listen_addrs=listen),
            background_trio_service(self.pubsub),
            background_trio_service(self.router),
            trio.open_nursery() as nursery,
        ):
            self._nursery = nursery
            await self.pubsub.wait_until_ready()
            await self.gossip.start(nursery)
            for address in self.config.bootstrap:
                info = info_from_p2p_addr(multiaddr.Multiaddr(address))
                self.static[str(info.peer_id)] = info
            nursery.start_soon(self._redial_static_peers)
            if self.config.mdns:
                self._watch_mdns(nursery)
            task_status.started()
            await self._stopping.wait()
            nursery.cancel_scope.cancel()

    def stop(self) -> None:
        """Make `run` return (closing every connection and listener)."""
        self._stopping.set()

    # --- peers -------------------------------------------------------------------------

    async def add_peer(self, address: str) -> str:
        """Dial a full multiaddr (/ip4/../tcp/../p2p/ID) and keep it as a static peer."""
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        peer = str(info.peer_id)
        if peer in self.refused or self.score.is_banned(peer):
            raise PeerRefusedError(f"peer {peer} is refused")
        self.static[peer] = info
        await self._dial(info, raise_errors=True)
        return peer

    async def remove_peer(self, peer_id: str) -> bool:
        """Forget a static peer and disconnect it; True if it was connected."""
        self.static.pop(peer_id, None)
        peer = ID.from_base58(peer_id)
        was_connected = self.host.is_peer_connected(peer)
        await self.host.disconnect(peer)
        return was_connected

    async def refuse_peer(self, peer_id: str) -> None:
        """Disconnect a peer and refuse it (both ways) until `allow_peer`."""
        self.refused.add(peer_id)
        await self.host.disconnect(ID.from_base58(peer_id))

    def allow_peer(self, peer_id: str) -> None:
        """Lift a refusal; a static peer is redialled on the next round."""
        self.refused.discard(peer_id)

    def peers(self) -> list[PeerRecord]:
        """The connected peers, for admin_peers."""
        records = []
        for peer, connections in self.host.get_network().get_connections_map().items():
            if not connections:
                continue
            connection = connections[0]
            records.append(
                PeerRecord(
                    peer_id=str(peer),
                    addrs=tuple(str(a) for a in connection.get_transport_addresses()),
                    direction=connection.direction.name.lower(),
                    penalty=self.score.points(str(peer)),
                    status=self.statuses.get(str(peer)),
                )
            )
        return records

    def addrs(self) -> list[str]:
        """This host's dialable multiaddrs, each ending in /p2p/<peer id>."""
        return [str(address) for address in self.host.get_addrs()]

    def penalise(self, peer_id: str, offence: Offence) -> None:
        """Score an offence; past the threshold, disconnect and ban the peer."""
        if self.score.penalise(peer_id, offence) and self._nursery is not None:
            logger.warning("peer %s banned after %s", peer_id, offence.name)
            self._nursery.start_soon(self.host.disconnect, ID.from_base58(peer_id))

    def ranked_peers(self) -> list[ID]:
        """Connected peers with the fewest penalty points first: whom to ask first."""
        peers = [p for p in self.host.get_connected_peers() if not self.score.is_banned(str(p))]
        return sorted(peers, key=lambda peer: self.score.points(str(peer)))

    # --- internals ---------------------------------------------------------------------

    async def _dial(self, info: PeerInfo, *, raise_errors: bool = False) -> None:
        # A failed dial puts the peer in the swarm's negative cache for 60 s; a static
        # peer that restarts must be dialable again at once.
        self.host.get_network().unblock_peer(info.peer_id)
        try:
            with trio.fail_after(self.config.dial_timeout):
                await self.host.connect(info)
        except Exception as error:
            if raise_errors:
                raise
            logger.debug("dial %s failed: %s", info.peer_id, error)

    async def _redial_static_peers(self) -> None:
        while True:
            for peer, info in list(self.static.items()):
                if self._may_dial(peer) and not self.host.is_peer_connected(info.peer_id):
                    assert self._nursery is not None
                    self._nursery.start_soon(self._dial, info)
            await trio.sleep(self.config.redial_interval)

    def _may_dial(self, peer: str) -> bool:
        return peer != self.peer_id and peer not in self.refused and not self.score.is_banned(peer)

    async def _handshake(self, peer: ID) -> None:
        try:
            await self.exchange.status(peer)
        except (RequestResponseError, wire.RefusedError, wire.WireError) as error:
            logger.info("status handshake with %s failed: %s", peer, error)

    async def _record_status(self, peer_id: str, status: ChainStatus) -> None:
        genesis_hash = await trio.to_thread.run_sync(self._chain.genesis_hash)
        if status.genesis_hash != genesis_hash:
            logger.warning("peer %s is on genesis %s", peer_id, status.genesis_hash.hex())
            self.penalise(peer_id, Offence.WRONG_GENESIS)
            return
        self.statuses[peer_id] = status
        await trio.to_thread.run_sync(self._sink.on_peer_status, peer_id, status)

    def _on_connected(self, peer: ID) -> None:
        assert self._nursery is not None
        if not self._may_dial(str(peer)):
            self._nursery.start_soon(self.host.disconnect, peer)
        else:
            self._nursery.start_soon(self._handshake, peer)

    def _on_disconnected(self, peer: ID) -> None:
        if not self.host.is_peer_connected(peer):
            self.statuses.pop(str(peer), None)

    def _watch_mdns(self, nursery: trio.Nursery) -> None:
        """Dial peers mDNS finds (its listener runs on zeroconf's thread)."""
        token = trio.lowlevel.current_trio_token()

        def discovered(info: PeerInfo) -> None:
            if self._may_dial(str(info.peer_id)):
                trio.from_thread.run_sync(nursery.start_soon, self._dial, info, trio_token=token)

        peerDiscovery.register_peer_discovered_handler(discovered)
        nursery.start_soon(_unregister_on_exit, discovered)
        nursery.start_soon(self._keep_mdns_registered)

    async def _keep_mdns_registered(self) -> None:
        """Register this node's mDNS service again whenever zeroconf does not hold it.

        On a busy machine zeroconf's registration times out (EventLoopBlocked) and 0.8.1 only
        logs that, so the node would never be found on the LAN; checking every few seconds
        and registering again (on a worker thread: zeroconf's call blocks) repairs it.
        """
        mdns = self.host.mDNS
        if mdns is None:
            return
        while True:
            await trio.sleep(MDNS_RECHECK_S)
            info = mdns.broadcaster.service_info
            if info is not None and mdns.zeroconf.registry.async_get_info_name(info.name) is None:
                await trio.to_thread.run_sync(mdns.broadcaster.register)


def _disable_auto_connector(host: IHost) -> None:
    """Turn off the swarm's auto-connector, which 0.8.1 offers no option to disable.

    It dials every peer in the peerstore whenever the node has fewer than ~150
    connections, which would undo admin_removePeer and heal test partitions behind the
    operator's back. Static peers are redialled by `_redial_static_peers` instead.
    """

    async def dial_nobody() -> None:
        return None

    host.get_network().auto_connector.maybe_connect = dial_nobody  # type: ignore[method-assign]


async def _unregister_on_exit(handler: object) -> None:
    try:
        await trio.sleep_forever()
    finally:
        peerDiscovery.unregister_peer_discovered_handler(handler)  # type: ignore[arg-type]


class _PeerPolicy(INotifee):
    """Swarm notifications routed to the host's policy (called on the trio loop)."""

    def __init__(self, owner: PoLeHost) -> None:
        self._owner = owner

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._owner._on_connected(conn.muxed_conn.peer_id)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._owner._on_disconnected(conn.muxed_conn.peer_id)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None
