"""A loopback devnet working through queued PoLe tasks: what the PoLe benchmarks share.

`task_network(root)` is pole_chain.devnet's Cluster as `pole demo` runs it: 4 full nodes in
a line (0 - 1 - 2 - 3, node 0 sealing idle blocks), 3 `pole mine` processes on nodes 0..2,
each reaching only its own node's RPC, and the data node on node 3, which posts tasks
(`post_tasks`) and releases each one's test set in auto mode once every miner announced
(`release_in_turn`), as `pole task release --auto` does. Tasks posted together queue: the
registry's best task (equal rewards and time limits: the lowest id) is open, the next one
becomes best when a PoLe block settles it. Node logs are at info level, so every node
writes a timestamped line when it stores a PoLe block (probes.pole_block_imports).
"""
from __future__ import annotations

from pathlib import Path

from web3 import Web3

from miner.pole_module import pole_web3
from pole_chain.clients.data_node import post_task, release
from pole_chain.devnet.cluster import Cluster
from pole_chain.devnet.probes import bonded_everywhere, wait_until
from vm_hooks.genesis import dev_accounts
from vm_hooks.seal import BlockKind, SealError, read_block_seal
from vm_hooks.task import TaskStatus

NODES = 4
MINERS = 3
POSTER = dev_accounts()[0]
MINER_ACCOUNTS = dev_accounts()[1 : 1 + MINERS]  # the Cluster's keys for miners 0..2
ETHER = 10**18
MIN_TRAIN_BPS = 9000
#: A queued task's deadline runs while the ones before it are mined: an hour covers any
#: queue these benchmarks make.
TIME_LIMIT_S = 3600
#: Seconds a release waits (from the moment its task is the open one) for every miner's
#: announcement before admitting those it has: training here takes seconds, so this is
#: for stragglers only.
RELEASE_WAIT_S = 30.0
SETTLE_WAIT_S = 300.0


def task_network(root: Path) -> Cluster:
    """The devnet, not started yet (`with task_network(root) as net:` starts and stops it)."""
    return Cluster(
        root, nodes=NODES, miners=MINERS, node_args=("--log-level", "info"),
        miner_args=("--poll", "0.5"),
    )


def data_node(net: Cluster) -> Web3:
    """A Web3 with `w3.pole` on the data node's node (the last one)."""
    return pole_web3(net.members[-1].url)


def wait_bonded(net: Cluster) -> None:
    """Until every node sees every miner's bond (data nodes admit bonded miners only)."""
    miners = [account.address for account in MINER_ACCOUNTS]
    wait_until(lambda: bonded_everywhere(net.members, miners), timeout=SETTLE_WAIT_S,
               what="every miner bonded on every node")


def post_tasks(net: Cluster, count: int, workdir: Path) -> list[int]:
    """Post `count` digits/mlp tasks (seeds 0.., so each has its own split); their ids."""
    w3 = data_node(net)
    return [
        post_task(
            w3, POSTER, dataset="digits", model="mlp", reward_wei=ETHER,
            min_train_bps=MIN_TRAIN_BPS, time_limit_s=TIME_LIMIT_S, solutions_wanted=MINERS,
            seed=seed, workdir=workdir,
        )
        for seed in range(count)
    ]


def release_in_turn(net: Cluster, task_ids: list[int], workdir: Path) -> list[int]:
    """Release each task (once it is the open one and every miner announced, or after
    RELEASE_WAIT_S), then wait for the PoLe block that settles it, on the data node's
    node. The number of solutions each release admitted."""
    w3 = data_node(net)
    admitted = []
    for task_id in task_ids:
        outcome = release(w3, POSTER, task_id, workdir, wait_for=MINERS, timeout_s=RELEASE_WAIT_S)
        admitted.append(len(outcome.admitted))
        wait_until(
            lambda t=task_id: w3.pole.get_task(t).status is TaskStatus.SETTLED,
            timeout=SETTLE_WAIT_S, what=f"task {task_id} settled",
        )
    return admitted


def canonical_pole_blocks(w3: Web3) -> list[dict]:
    """The canonical chain's PoLe blocks, oldest first (web3 blocks)."""
    blocks = []
    for number in range(1, w3.eth.block_number + 1):
        block = w3.eth.get_block(number)
        try:
            kind = read_block_seal(block).kind
        except SealError:
            continue
        if kind is BlockKind.POLE:
            blocks.append(block)
    return blocks
