"""LAN discovery: two `pole node --mdns` processes find each other with no --peer at all.

Separate processes, as a user runs them: each node has its own zeroconf responder, so the
test sees what a LAN sees, not two responders sharing one Python process.
"""
from __future__ import annotations

from pole_chain.devnet.node_process import NodeProcess

from . import rpc, wait_until


def test_two_nodes_find_each_other_by_mdns(tmp_path):
    nodes = [
        NodeProcess(tmp_path / f"node{i}", "--mdns", "--listen", "/ip4/127.0.0.1/tcp/0", dev=False)
        for i in range(2)
    ]
    try:
        for node in nodes:
            node.start()
        wait_until(
            lambda: all(int(rpc(node, "net_peerCount"), 16) >= 1 for node in nodes),
            timeout=90,
            what="both nodes have a peer found by mDNS",
        )
    finally:
        for node in nodes:
            node.stop()
