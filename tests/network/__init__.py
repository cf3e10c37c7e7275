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
