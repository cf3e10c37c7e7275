"""A local multi-node PoLe network on loopback: `pole devnet --nodes N --miners M`.

N `pole node` processes (full nodes, not dev nodes: every block is sealed by the rules and
carried between processes by the peer-to-peer network), each with its own data directory
and log file under one root, connected in a line (node i dials node i-1) or a star (every
node dials node 0) with --peer. Node 0 mines idle blocks so the chain moves while no task
is open. Each idle miner is paid to an address of its own (`idle_coinbase`): two of them on
one parent in one second would otherwise seal byte-identical blocks (the nonce search starts
at zero), and a partition would not split the chain. M `pole mine` processes, miner j on
node j mod N with dev key j+1, reach only their own node's RPC, as a real miner would.
Integration tests and benchmarks drive the same class.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from eth_utils import encode_hex, keccak, to_checksum_address

from pole_chain.devnet.node_process import NodeProcess, child_environment

TOPOLOGIES = ("line", "star")


class ClusterNode(NodeProcess):
    """A node process whose stderr goes to a log file in the cluster's root."""

    def __init__(self, datadir: Path, log_path: Path, *args: str) -> None:
        super().__init__(datadir, *args, dev=False)
        self.log_path = log_path
        self._stderr = open(log_path, "a+")  # noqa: SIM115 (closed with the cluster)


@dataclass
class Cluster:
    """N nodes and M miners under `root`; `start()` returns once every node listens."""

    root: Path
    nodes: int = 4
    miners: int = 0
    topology: str = "line"
    idle_miners: tuple[int, ...] = (0,)
    node_args: tuple[str, ...] = ()
    miner_args: tuple[str, ...] = ()  # appended to every `pole mine` (say --once, --lr)
    members: list[ClusterNode] = field(default_factory=list)
    miner_processes: list[subprocess.Popen] = field(default_factory=list)
    _miner_logs: list[IO[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, not {self.topology!r}")
        if self.nodes < 1 or self.miners < 0:
            raise ValueError("a cluster needs at least one node and no negative miners")

    def start(self) -> "Cluster":
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for index in range(self.nodes):
                self.members.append(self.start_node(index))
            for index in range(self.miners):
                self._start_miner(index)
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, index: int, *extra: str) -> ClusterNode:
        """Start (or restart, on its datadir) node `index`, dialling its topology peer."""
        args = ["--listen", "/ip4/127.0.0.1/tcp/0", *self.node_args, *extra]
        if index in self.idle_miners:
            args += ["--mine-idle", "--coinbase", idle_coinbase(index)]
        peer = self._peer_for(index)
        if peer is not None:
            args += ["--peer", peer]
        node = ClusterNode(self.root / f"node{index}", self.root / f"node{index}.log", *args)
        return node.start()  # type: ignore[return-value]

    def _peer_for(self, index: int) -> str | None:
        target = 0 if self.topology == "star" else index - 1
        if index == 0 or target >= len(self.members):
            return None
        return self.members[target].multiaddr

    def _start_miner(self, index: int) -> None:
        from vm_hooks.genesis import dev_accounts

        account = dev_accounts()[index + 1]
        node = self.members[index % len(self.members)]
        log = open(self.root / f"miner{index}.log", "a+")  # noqa: SIM115
        self._miner_logs.append(log)
        command = [
            sys.executable, "-m", "pole_chain", "mine", "--rpc", node.url,
            "--key", encode_hex(bytes(account.key)), "--seed", str(index), "--no-progress",
            *self.miner_args,
        ]
        self.miner_processes.append(
            subprocess.Popen(command, env=child_environment(), stdout=log, stderr=log)
        )

    def stop(self) -> None:
        """SIGTERM every miner and node (SIGKILL after 20 s), close the logs."""
        for process in self.miner_processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.miner_processes:
            _wait_or_kill(process)
        for node in self.members:
            if node.process is not None and node.process.poll() is None:
                try:
                    node.stop()
                except subprocess.TimeoutExpired:
                    node.kill()
        for log in self._miner_logs:
            log.close()

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def idle_coinbase(index: int) -> str:
    """The address node `index` of a cluster is paid to for its idle blocks."""
    return to_checksum_address(keccak(f"pole devnet idle miner {index}".encode())[-20:])


def _wait_or_kill(process: subprocess.Popen, timeout: float = 20.0) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


# --------------------------------------------------------------------------------------
# pole devnet
# --------------------------------------------------------------------------------------


def configure_devnet_command(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Every node is a full node on the peer-to-peer network; node 0 mines idle blocks. "
        "Each node's RPC URL and multiaddr are printed once all of them listen; Ctrl-C "
        "stops every process. Logs: ROOT/nodeI.log and ROOT/minerJ.log."
    )
    parser.add_argument("--nodes", type=int, default=4, help="node processes (default: 4)")
    parser.add_argument("--miners", type=int, default=0,
                        help="`pole mine` processes, miner j on node j mod N (default: 0)")
    parser.add_argument("--topology", choices=TOPOLOGIES, default="line",
                        help="line: node i dials i-1; star: every node dials node 0")
    parser.add_argument("--root", type=Path, default=None,
                        help="directory for the data directories and logs (default: a new "
                        "temporary directory)")
    parser.set_defaults(run=run_devnet)


def run_devnet(args: argparse.Namespace) -> int:
    root = args.root or Path(tempfile.mkdtemp(prefix="pole-devnet-"))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        cluster = Cluster(root, nodes=args.nodes, miners=args.miners, topology=args.topology)
        cluster.start()
    except (RuntimeError, ValueError) as exc:
        print(f"pole devnet: {exc}", file=sys.stderr)
        return 1
    for index, node in enumerate(cluster.members):
        print(f"node {index}: {node.url} {node.multiaddr}", flush=True)
    print(f"devnet of {args.nodes} nodes and {args.miners} miners under {root}; Ctrl-C stops it",
          flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        cluster.stop()
    return 0
