"""The model topic carries only models a release admits: anything else costs the sender as
the rules say (docs/NETWORK.md, "Models ahead of their blocks").

    node     one `pole node` process on the network
    sloppy   a libp2p peer of the test gossips a well-formed model that no release admits
             (ignored: nobody is blamed, since two nodes may hold different releases of one
             anchor; nothing is stored) and then bytes that are not a model message
             (rejected: one offence's points)
The admitted path, a model running ahead of its PoLe block, is in test_pole_task.py.
"""
from __future__ import annotations

import secrets

from miner.messages import commitment_for
from miner.pole_module import pole_web3
from pole_chain.devnet.cluster import Cluster
from pole_chain.net import Kind
from pole_chain.net.peer_score import Offence
from pole_chain.node.model_gossip import encode_model_gossip
from tests.net.harness import start_network
from tests.network import genesis_of, peer_id, rpc, wait_until
from tests.network.test_misbehaving_peer import QuietChain, subscribed


def penalty(node, peer: str) -> float:
    return next(p["penalty"] for p in rpc(node, "admin_peers") if p["id"] == peer)


def test_a_model_no_release_admits_costs_nothing_and_junk_costs_points(tmp_path):
    with Cluster(tmp_path / "cluster", nodes=1) as cluster:
        (node,) = cluster.members
        sloppy = start_network(QuietChain(genesis_of(node)))
        try:
            sloppy.add_peer(node.multiaddr)
            wait_until(lambda: subscribed(sloppy, peer_id(node), Kind.MODEL), what="subscription")
            anchor, miner, model = secrets.token_bytes(32), secrets.token_bytes(20), b"\x01" * 64
            sloppy.publish_model(encode_model_gossip(anchor, miner, model))
            sloppy.publish_model(b"not a model message")
            wait_until(lambda: penalty(node, sloppy.peer_id) > 0, what="the junk scored")
            assert penalty(node, sloppy.peer_id) <= Offence.INVALID_GOSSIP.points
            commitment = commitment_for(model, miner, anchor)
            assert pole_web3(node.url).pole.get_model(commitment) is None
        finally:
            sloppy.stop()
