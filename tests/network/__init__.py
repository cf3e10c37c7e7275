"""Multi-node tests: real `pole node` processes on 127.0.0.1 joined by the p2p network.

The RPC probes and bounded waits live in pole_chain/devnet/probes.py (bench/ uses them
too); they are re-exported here for the tests.
"""
from pole_chain.devnet.probes import (  # noqa: F401 (re-exports)
    WAIT,
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


def genesis_of(node) -> bytes:
    """The node's genesis hash as its admin_nodeInfo names it (what a harness peer claims)."""
    return bytes.fromhex(rpc(node, "admin_nodeInfo")["protocols"]["pole"]["genesis"][2:])


def honest_and_hostile(node, chain_class):
    """An attacker and an honest observer (with its recording sink), both dialling `node`:
    libp2p harness peers on `node`'s genesis, claiming no score."""
    from tests.net.harness import RecordingSink, start_network

    sink = RecordingSink()
    genesis = genesis_of(node)
    attacker = start_network(chain_class(genesis))
    observer = start_network(chain_class(genesis), sink)
    for peer in (attacker, observer):
        peer.add_peer(node.multiaddr)
    return attacker, observer, sink
