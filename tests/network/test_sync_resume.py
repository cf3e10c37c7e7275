"""Sync over several segments, killed midway: nothing committed is lost, and it resumes.

Sync downloads the next segment while it imports this one and imports in slices under one
hold of the node lock (pole_chain/node/sync.py); each block is still committed on its own,
so a SIGKILL in the middle of a sync keeps every block imported before it.
"""
from __future__ import annotations

from pole_chain.devnet.node_process import NodeProcess
from pole_chain.node.sync import SEGMENT
from tests.network import block_hash, head_number, receipt_block, rpc, send_transfer, wait_until

#: Three segments and a part: the pipeline hands over between segments at least three times.
CHAIN = 3 * SEGMENT + 17
LISTEN = ("--listen", "/ip4/127.0.0.1/tcp/0")


def test_a_sync_killed_midway_keeps_its_blocks_and_resumes_to_the_same_chain(tmp_path):
    with NodeProcess(tmp_path / "source", *LISTEN) as source:
        tx_hash = send_transfer(source, 1, 0)  # dev automine: block 1 holds it
        rpc(source, "evm_mine", [{"blocks": CHAIN - 1}])
        target = head_number(source)
        assert target == CHAIN

        fresh = NodeProcess(tmp_path / "fresh", *LISTEN, "--peer", source.multiaddr).start()
        try:
            stored = wait_until(lambda: head_number(fresh), pause_s=0.01, what="sync started")
        finally:
            fresh.kill()
        assert stored < target  # killed midway

        with NodeProcess(tmp_path / "fresh", *LISTEN) as restarted:  # no peer yet
            kept = head_number(restarted)
            assert kept >= stored  # every block imported before the kill is still there
            assert block_hash(restarted, kept) == block_hash(source, kept)
            assert receipt_block(restarted, tx_hash) == 1
            assert rpc(restarted, "admin_addPeer", [source.multiaddr]) is True
            wait_until(lambda: head_number(restarted) >= target, what="sync resumed")
            assert all(
                block_hash(restarted, n) == block_hash(source, n) for n in range(target + 1)
            )
