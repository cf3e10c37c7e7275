"""Block propagation over a 4-node loopback network, and sync speed of a fresh node.

`python -m bench.propagation [--tasks 4]`. Separate `pole node` processes joined by the p2p
network:
- propagation_s: PoLe blocks with their models (bench/task_network.py: a 4-node line, 3
  miners on nodes 0..2, the data node on node 3 posting TASKS tasks and releasing them in
  auto mode). For every PoLe block, sibling or winner, the time from its import on the
  node its miner sealed it on to its import on the last of the four nodes: each node logs
  the block once it stored it, after fetching the release and model from a peer and
  re-evaluating the model (probes.pole_block_imports; log timestamps, 1 ms, one clock).
  Median and max over the blocks; up to three gossip hops. `propagation_missing`: PoLe
  blocks some node still lacked STRAGGLER_WAIT s after the nodes agreed on the head.
- idle_propagation_s: idle blocks on a 4-node line (0 - 1 - 2 - 3, node 0 mines them); for
  each of the next BLOCKS blocks, the time from node 0 serving it over RPC to every node
  serving it (three hops, each importing the block before relaying it). Median and max;
  the RPC polling interval (POLL seconds) bounds the resolution.
- sync_blocks_per_s: a dev node with SYNC_BLOCKS blocks (evm_mine), then a fresh dev node
  dialling it; blocks imported between the first poll that sees it past genesis and the one
  that sees the head, over that time (process start-up is not sync; `sync_total_s` has it).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.report import report
from bench.task_network import post_tasks, release_in_turn, task_network, wait_bonded
from pole_chain.devnet.cluster import Cluster
from pole_chain.devnet.node_process import NodeProcess
from pole_chain.devnet.probes import (
    block_hash,
    converged,
    head_number,
    pole_block_imports,
    rpc,
    wait_until,
)

TASKS = 4
BLOCKS = 10
#: Seconds a PoLe block that some node stored may take to reach the others.
STRAGGLER_WAIT = 60.0
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


def measure_pole_propagation(root: Path, tasks: int) -> tuple[list[float], int]:
    """Per PoLe block on every node: the last node's import time minus the first (its
    sealing node's); and how many PoLe blocks some node still lacked after STRAGGLER_WAIT."""
    with task_network(root / "pole") as net:
        wait_bonded(net)
        release_in_turn(net, post_tasks(net, tasks, root / "data-node"), root / "data-node")
        height = head_number(net.members[-1])
        wait_until(lambda: converged(net.members, at_least=height), what="one head")
        # siblings that lost fork choice travel too, after the head: give them time
        deadline = time.monotonic() + STRAGGLER_WAIT
        wait_until(lambda: _everywhere(net) or time.monotonic() > deadline)
        imports = [pole_block_imports(node.log_path) for node in net.members]
    seen = set().union(*imports)
    everywhere = seen.intersection(*imports)
    delays = [max(s[b] for s in imports) - min(s[b] for s in imports) for b in everywhere]
    return delays, len(seen) - len(everywhere)


def _everywhere(net: Cluster) -> bool:
    """Whether every PoLe block some node stored is stored on every node."""
    imports = [set(pole_block_imports(node.log_path)) for node in net.members]
    return all(stored == set().union(*imports) for stored in imports)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=TASKS,
                        help=f"PoLe tasks mined for propagation_s (default: {TASKS})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pole-bench-") as directory:
        root = Path(directory)
        pole, missing = measure_pole_propagation(root, args.tasks)
        idle = measure_propagation(root)
        sync_rate, sync_total = measure_sync(root)
    report(
        "propagation",
        {
            "propagation_s": round(statistics.median(pole), 4),
            "propagation_max_s": round(max(pole), 4),
            "propagation_blocks": len(pole),
            "propagation_missing": missing,
            "tasks": args.tasks,
            "idle_propagation_s": round(statistics.median(idle), 4),
            "idle_propagation_max_s": round(max(idle), 4),
            "idle_propagation_blocks": len(idle),
            "hops": 3,
            "sync_blocks": SYNC_BLOCKS,
            "sync_blocks_per_s": round(sync_rate, 1),
            "sync_total_s": round(sync_total, 2),
        },
    )


if __name__ == "__main__":
    main()
