"""An announcement that overtakes its anchor block is held, taken in once the block arrives, and
relayed: before, it was ignored there and never sent again, so the data node behind that hop
never heard of the solution (bench.block_intervals, 7 of 20 releases waited 30 s).

    nodes      node 0 (mines idle blocks) and node 1, separate `pole node` processes
    partition  node 1 refuses node 0 while a task is posted on node 0 and anchored there, so
               node 1 does not hold the anchor block
    harness    a libp2p peer of the test, connected to node 1 only, gossips a miner's signed
               announcement for that anchor: node 1 holds it (pole_nodeStatus earlyGossip)
               and blames nobody; a forged one for the same anchor is rejected (points),
               not held
    heal       node 1 syncs the anchor block, takes the announcement in and publishes it;
               node 0, which only node 1 could have told, stores it
"""
from __future__ import annotations

import secrets

from eth_utils import to_canonical_address

from miner.messages import SolutionAnnouncement
from miner.pole_module import pole_web3
from pole_chain.clients.data_node import post_task
from pole_chain.devnet.cluster import Cluster
from pole_chain.net import Kind
from tests.net.harness import start_network
from tests.network import converged, genesis_of, head_number, peer_id, rpc, wait_until
from tests.network.test_misbehaving_peer import QuietChain, subscribed
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID

POSTER, MINER = dev_accounts()[0], dev_accounts()[1]
OTHER_MINER = to_canonical_address(dev_accounts()[2].address)


def penalty(node, peer: str) -> float:
    return next(p["penalty"] for p in rpc(node, "admin_peers") if p["id"] == peer)


def early_gossip(node) -> int:
    return pole_web3(node.url).pole.node_status()["earlyGossip"]


def test_an_announcement_ahead_of_its_anchor_is_held_then_taken_in_and_relayed(tmp_path):
    with Cluster(tmp_path / "cluster", nodes=2) as cluster:
        ahead, behind = cluster.members
        wait_until(lambda: converged(cluster.members, at_least=1), what="a common start")
        for here, there in ((ahead, behind), (behind, ahead)):
            assert rpc(here, "admin_refusePeer", [peer_id(there)]) is True
        split = head_number(ahead)
        task_id = post_task(
            pole_web3(ahead.url), POSTER, dataset="iris", model="logreg", reward_wei=10**18,
            min_train_bps=5000, time_limit_s=900, solutions_wanted=1,
            workdir=tmp_path / "data-node",
        )
        task = wait_until(lambda: _anchored(ahead, task_id), what="the task anchored on node 0")
        assert head_number(behind) <= split  # node 1 has not seen the task's blocks

        harness = start_network(QuietChain(genesis_of(behind)))
        try:
            harness.add_peer(behind.multiaddr)
            wait_until(lambda: subscribed(harness, peer_id(behind), Kind.ANNOUNCEMENT),
                       what="node 1's announcement subscription")
            announcement = SolutionAnnouncement.sign(
                chain_id=CHAIN_ID, task_id=task_id, anchor_hash=task.anchor.hash,
                model_commitment=secrets.token_bytes(32), train_bps=9000,
                private_key=MINER.key,
            ).encode()
            harness.publish_announcement(announcement)
            wait_until(lambda: early_gossip(behind) == 1, what="node 1 holding the announcement")
            assert _announcements(behind, task) == []
            penalties = {p["id"]: p["penalty"] for p in rpc(behind, "admin_peers")}
            assert penalties[harness.peer_id] == 0  # an anchor not here yet is nobody's fault
            forged = SolutionAnnouncement.decode(announcement).copy(miner=OTHER_MINER).encode()
            harness.publish_announcement(forged)  # MINER's signature, OTHER_MINER's name
            wait_until(lambda: penalty(behind, harness.peer_id) > 0, what="the forgery scored")
            assert early_gossip(behind) == 1  # still only the genuine one

            for here, there in ((ahead, behind), (behind, ahead)):
                assert rpc(here, "admin_allowPeer", [peer_id(there)]) is True
            wait_until(lambda: _announcements(behind, task) == [announcement],
                       what="node 1 taking the announcement in once the anchor synced")
            wait_until(lambda: _announcements(ahead, task) == [announcement],
                       what="node 0 hearing it from node 1")
            assert early_gossip(behind) == 0
        finally:
            harness.stop()


def _anchored(node, task_id: int):
    task = pole_web3(node.url).pole.best_task()
    return task if task is not None and task.task_id == task_id and task.anchor else None


def _announcements(node, task) -> list[bytes]:
    return pole_web3(node.url).pole.announcements(task.task_id, task.anchor.hash)
