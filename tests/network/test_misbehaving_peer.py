"""A peer sending malformed, oversized and invalid gossip is dropped; nothing it sent travels on."""
from __future__ import annotations

import pytest
import rlp
from libp2p.peer.id import ID

from pole_chain.devnet.cluster import Cluster
from pole_chain.net import ChainStatus, Kind
from tests.net.harness import DictChain, start_network
from tests.network import (
    converged,
    genesis_of,
    honest_and_hostile,
    peer_id,
    receipt_block,
    rpc,
    send_transfer,
    wait_until,
)


class QuietChain(DictChain):
    """A chain view on the real genesis that claims no score (so nobody syncs from it)."""

    def head(self) -> ChainStatus:
        return ChainStatus(self.genesis_hash(), b"\x02" * 32, 0, 0)


@pytest.fixture
def two_nodes(tmp_path):
    net = Cluster(tmp_path / "cluster", nodes=2).start()
    yield net.members
    net.stop()


def subscribed(host_net, node_peer: str, kind: Kind) -> bool:
    """Whether `host_net` knows the node subscribes to the topic of `kind` (gossip reaches it)."""
    host = host_net._host
    topic = host.gossip.topics[kind]
    return host_net._call_sync(
        lambda: ID.from_base58(node_peer) in host.pubsub.peer_topics.get(topic, set())
    )


def wait_dropped(node, peer, what: str) -> None:
    """Wait until `node` no longer lists the harness peer among its peers."""
    wait_until(lambda: peer.peer_id not in {p["id"] for p in rpc(node, "admin_peers")}, what=what)


def transfer_agreed(miner, node, value: int) -> None:
    """A transfer sent to `miner` is mined, reaches `node` by gossip, and both agree on it."""
    tx_hash = send_transfer(miner, value, 0)
    mined = wait_until(lambda: receipt_block(node, tx_hash), what="tx mined and gossiped")
    wait_until(lambda: converged([miner, node], at_least=mined), what="agreement")


def test_a_peer_sending_junk_is_dropped_while_the_rest_keep_working(two_nodes):
    miner, node = two_nodes
    attacker, observer, observer_sink = honest_and_hostile(node, QuietChain)
    try:
        target = peer_id(node)
        for kind in (Kind.BLOCK, Kind.TRANSACTION):
            wait_until(lambda k=kind: subscribed(attacker, target, k), what="subscriptions")
            wait_until(lambda k=kind: subscribed(observer, target, k), what="subscriptions")
        topics = attacker._host.gossip.topics
        oversized = rlp.encode([b"tx", 1, b"\x02" + b"\x00" * (200 * 1024)])  # past 128 KiB
        attacker.publish_block(rlp.encode([b"not", b"a", b"block"]))  # invalid: REJECT
        attacker._call(attacker._host.pubsub.publish, topics[Kind.TRANSACTION], oversized)
        attacker._call(attacker._host.pubsub.publish, topics[Kind.BLOCK], b"\xc3not a block")
        wait_dropped(node, attacker, "the attacker dropped")
        # the honest network still works, and relays to the honest observer
        transfer_agreed(miner, node, 4)
        observer_sink.wait_for(lambda s: len(s.payloads("tx")) >= 1)
        relayed = observer_sink.payloads()
        assert not any(p.startswith(b"\xc3not") or len(p) > 100 * 1024 for p in relayed)
        assert rlp.encode([b"not", b"a", b"block"]) not in relayed
        assert observer.peer_id in {p["id"] for p in rpc(node, "admin_peers")}
    finally:
        attacker.stop()
        observer.stop()


class LyingChain(QuietChain):
    """Claims the most score on the real genesis, then serves well-framed RLP items that are
    not headers (at most the count asked for, so the fault is the chain, not the framing):
    every node that meets it tries to sync from it, from genesis or from a common ancestor."""

    def head(self) -> ChainStatus:
        return ChainStatus(self.genesis_hash(), b"\x03" * 32, 5, 10**30)

    def headers(self, start: int, count: int) -> list[bytes]:
        return [rlp.encode([b"not", b"a header"]) for _ in range(min(count, 6))]


def test_a_peer_serving_an_invalid_chain_in_sync_is_penalised_and_dropped(two_nodes):
    """Sync reports a peer whose headers do not decode (50 points a round, decaying): after two or three rounds
    it is banned and disconnected, and the node keeps following its honest peer. The node
    holds blocks before the liar dials, so sync first looks for a common ancestor."""
    miner, node = two_nodes
    genesis = genesis_of(node)
    wait_until(lambda: converged([miner, node], at_least=1), what="blocks before the liar")
    liar = start_network(LyingChain(genesis))
    try:
        liar.add_peer(node.multiaddr)
        wait_dropped(node, liar, "the liar dropped")
        transfer_agreed(miner, node, 5)
        assert liar.peer_id not in {p["id"] for p in rpc(node, "admin_peers")}  # banned: no redial
        log = node.log_path.read_text()
        assert f"peer {liar.peer_id} served an invalid chain" in log
        assert f"peer {liar.peer_id} banned after INVALID_CHAIN" in log
    finally:
        liar.stop()
