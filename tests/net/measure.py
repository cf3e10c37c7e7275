"""Figures for docs/NETWORK.md: gossip latency over two hops and a 3 MiB blob fetch.

    .venv/bin/python -m tests.net.measure

Three Networks in this process (each its own thread and trio loop, as in a node), in a
line A - B - C; B's and C's sinks accept everything. Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from tests.net.harness import DictChain, RecordingSink, eventually, link, meshed, start_network

ROUNDS = 10


def gossip_latency(size: int, nets, sink_c: RecordingSink) -> float:
    """Median seconds from A's publish to C's sink, over ROUNDS distinct messages."""
    samples = []
    for number in range(ROUNDS):
        payload = number.to_bytes(4, "big") + os.urandom(size - 4)
        started = time.perf_counter()
        nets[0].publish_block(payload)
        sink_c.wait_for(lambda s: payload in s.payloads())
        samples.append(sink_c.arrival(payload) - started)
    return statistics.median(samples)


def main() -> None:
    sinks = [RecordingSink() for _ in range(3)]
    chains = [DictChain() for _ in range(3)]
    nets = [start_network(chain, sink) for chain, sink in zip(chains, sinks)]
    link(nets[1], nets[0])
    link(nets[2], nets[1])
    eventually(lambda: meshed(nets[0], nets[1]) and meshed(nets[1], nets[2]))
    result = {
        "gossip_2hops_100B_s": gossip_latency(100, nets, sinks[2]),
        "gossip_2hops_500KB_s": gossip_latency(500_000, nets, sinks[2]),
    }
    digest = chains[0].put(os.urandom(3 * 1024 * 1024))
    fetches = []
    for _ in range(5):
        started = time.perf_counter()
        assert nets[1].fetch_blob(digest) is not None
        fetches.append(time.perf_counter() - started)
    result["blob_fetch_3MiB_s"] = statistics.median(fetches)
    result["load_average_1min"] = os.getloadavg()[0]
    for net in nets:
        net.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
