"""Block propagation over a 4-node loopback network, and sync speed of a fresh node.

`python -m bench.propagation`. Separate `pole node` processes joined by the p2p network:
- propagation_s: a 4-node line (0 - 1 - 2 - 3, node 0 mines idle blocks); for each of the
  next BLOCKS blocks, the time from node 0 serving it over RPC to every node serving it
  (three gossip hops, each hop importing the block before relaying it). Median and max.
  These are idle blocks: a PoLe block adds its data fetch and model evaluation per hop.
- sync_blocks_per_s: a dev node with SYNC_BLOCKS blocks (evm_mine), then a fresh dev node
  dialling it; blocks imported between the first poll that sees it past genesis and the one
  that sees the head, over that time (process start-up is not sync; `sync_total_s` has it).
The RPC polling interval (POLL seconds) bounds the resolution of both figures.
"""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.report import report
from pole_chain.devnet.cluster import Cluster
from pole_chain.devnet.node_process import NodeProcess
from pole_chain.devnet.probes import block_hash, head_number, rpc, wait_until

BLOCKS = 10
SYNC_BLOCKS = 240
POLL = 0.01


def _when_all_have(nodes: list[NodeProcess], number: int, timeout: float = 60.0) -> float:
    """perf_counter time at which every node first serves block `number` (polled)."""
    pending = set(range(len(nodes)))
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while pending:
        pending = {i for i in pending if block_hash(nodes[i], number) is None}
        if time.monotonic() > deadline:
            raise RuntimeError(f"block {number} did not reach every node in {timeout} s")
        if pending:
            pause.wait(POLL)
    return time.perf_counter()


def measure_propagation(root: Path) -> list[float]:
    with Cluster(root / "line", nodes=4) as net:
        nodes = net.members
        wait_until(lambda: all(int(rpc(n, "net_peerCount"), 16) >= 1 for n in nodes))
        delays = []
        start = head_number(nodes[0]) + 1
        for number in range(start, start + BLOCKS):
            wait_until(lambda n=number: block_hash(nodes[0], n), timeout=60.0)
            mined = time.perf_counter()
            delays.append(_when_all_have(nodes, number) - mined)
        return delays


def measure_sync(root: Path) -> tuple[float, float]:
    """(blocks per second while syncing, seconds from process start to the head)."""
    with NodeProcess(root / "source", "--listen", "/ip4/127.0.0.1/tcp/0") as source:
        rpc(source, "evm_mine", [{"blocks": SYNC_BLOCKS}])
        target = head_number(source)
        started = time.perf_counter()
        with NodeProcess(root / "fresh", "--peer", source.multiaddr) as fresh:
            first = wait_until(lambda: _head_and_time(fresh, 1), timeout=600.0)
            done = wait_until(lambda: _head_and_time(fresh, target), timeout=600.0)
            assert block_hash(fresh, target) == block_hash(source, target)
        rate = (done[0] - first[0]) / max(done[1] - first[1], POLL)
        return rate, done[1] - started


def _head_and_time(node: NodeProcess, at_least: int) -> tuple[int, float] | None:
    number = head_number(node)
    return (number, time.perf_counter()) if number >= at_least else None


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pole-bench-") as directory:
        root = Path(directory)
        delays = measure_propagation(root)
        sync_rate, sync_total = measure_sync(root)
    report(
        "propagation",
        {
            "propagation_s": round(statistics.median(delays), 4),
            "propagation_max_s": round(max(delays), 4),
            "propagation_blocks": len(delays),
            "block_kind": "idle",
            "hops": 3,
            "sync_blocks": SYNC_BLOCKS,
            "sync_blocks_per_s": round(sync_rate, 1),
            "sync_total_s": round(sync_total, 2),
        },
    )


if __name__ == "__main__":
    main()
