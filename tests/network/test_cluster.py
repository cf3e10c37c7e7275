"""Nodes as separate processes converge: gossip, restart after SIGKILL, partitions, late joiners."""
from __future__ import annotations

import pytest

from pole_chain.devnet.cluster import Cluster
from tests.network import (
    agree_at,
    block_hash,
    converged,
    head_number,
    peer_id,
    receipt_block,
    rpc,
    send_transfer,
    wait_until,
)


@pytest.fixture
def cluster(tmp_path):
    clusters: list[Cluster] = []

    def make(**options) -> Cluster:
        made = Cluster(tmp_path / f"cluster{len(clusters)}", **options).start()
        clusters.append(made)
        return made

    yield make
    for made in clusters:
        made.stop()


def test_four_nodes_in_a_line_agree_after_transactions_and_blocks(cluster):
    net = cluster(nodes=4)  # 0 - 1 - 2 - 3, node 0 mines idle blocks
    nodes = net.members
    wait_until(lambda: all(int(rpc(n, "net_peerCount"), 16) >= 1 for n in nodes), what="peers")
    # transactions enter at the far end: they travel three hops to the only miner
    hashes = [send_transfer(nodes[3], 1, nonce) for nonce in range(3)]
    hashes.append(send_transfer(nodes[2], 2, 0))
    mined = [wait_until(lambda h=h: receipt_block(nodes[0], h), what="tx mined") for h in hashes]
    height = wait_until(lambda: converged(nodes, at_least=max(mined) + 2), what="same head")
    for tx_hash, number in zip(hashes, mined):
        assert all(receipt_block(node, tx_hash) == number for node in nodes)
    assert agree_at(nodes, height)
    assert int(rpc(nodes[1], "net_peerCount"), 16) == 2


def test_a_node_killed_with_sigkill_restarts_from_its_datadir_and_catches_up(cluster):
    net = cluster(nodes=3, topology="star")
    nodes = net.members
    tx_hash = send_transfer(nodes[2], 1, 0)
    mined = wait_until(lambda: receipt_block(nodes[2], tx_hash), what="tx mined on node 2")
    wait_until(lambda: converged(nodes, at_least=mined), what="agreement before the kill")
    identity, stored = peer_id(nodes[2]), head_number(nodes[2])
    nodes[2].kill()
    moved_on = wait_until(lambda: head_number(nodes[0]) >= stored + 3 and head_number(nodes[0]))
    nodes[2] = net.members[2] = net.start_node(2)
    assert peer_id(nodes[2]) == identity  # the peer key lives in the datadir
    assert head_number(nodes[2]) >= stored  # resumed, not resynced from genesis
    wait_until(lambda: converged(nodes, at_least=moved_on), what="agreement after restart")
    assert receipt_block(nodes[2], tx_hash) == mined  # nothing lost


def test_a_partition_heals_to_the_higher_score_chain_on_every_node(cluster):
    net = cluster(nodes=4, idle_miners=(0, 3))  # 0 - 1 | 2 - 3, one miner per side
    nodes = net.members
    wait_until(lambda: converged(nodes, at_least=2), what="a common start")
    for here, there in ((1, 2), (2, 1)):
        assert rpc(nodes[here], "admin_refusePeer", [peer_id(nodes[there])]) is True
    split = head_number(nodes[0])
    # each side mines its own branch: the heads at one height differ
    wait_until(
        lambda: min(head_number(n) for n in nodes) > split + 3
        and block_hash(nodes[0], split + 3) != block_hash(nodes[3], split + 3),
        what="two branches",
    )
    refused = rpc(nodes[1], "admin_peers")
    assert peer_id(nodes[2]) not in {p["id"] for p in refused}
    for here, there in ((1, 2), (2, 1)):
        assert rpc(nodes[here], "admin_allowPeer", [peer_id(nodes[there])]) is True
    healed_above = max(head_number(n) for n in nodes)
    height = wait_until(lambda: converged(nodes, at_least=healed_above), what="one chain")
    scores = {rpc(n, "eth_getBlockByNumber", [hex(height), False])["totalDifficulty"] for n in nodes}
    assert len(scores) == 1


def test_a_fresh_node_joining_later_syncs_every_block(cluster):
    net = cluster(nodes=2)
    nodes = net.members
    tx_hash = send_transfer(nodes[1], 3, 0)
    mined = wait_until(lambda: receipt_block(nodes[0], tx_hash), what="tx mined")
    target = wait_until(lambda: head_number(nodes[0]) >= 20 and head_number(nodes[0]))
    late = net.start_node(2)  # a new datadir: starts at genesis, dials node 1
    net.members.append(late)
    seen = []  # eth_syncing's answers while it catches up (a fast sync may show none)

    def synced() -> bool:
        seen.append(rpc(late, "eth_syncing"))
        return head_number(late) >= target

    wait_until(synced, what="the late node synced")
    assert all(block_hash(late, n) == block_hash(nodes[0], n) for n in range(0, target + 1))
    assert receipt_block(late, tx_hash) == mined
    for answer in (a for a in seen if a is not False):
        assert int(answer["startingBlock"], 16) <= int(answer["currentBlock"], 16)
        assert int(answer["currentBlock"], 16) <= int(answer["highestBlock"], 16)
    wait_until(lambda: rpc(late, "eth_syncing") is False, what="eth_syncing false once synced")
