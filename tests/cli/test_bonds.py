"""Miner bonds: the data node admits bonded miners only; `pole mine` bonds on its first start.

Real `pole node --dev` (one per module, each test on an evm_snapshot), real `pole` processes,
real transactions to the registry.
"""
from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from miner.bonds import bond_state, ensure_bonded, is_bonded
from miner.messages import SolutionAnnouncement
from miner.mining import Miner, MinerConfig, NodeUnreachable
from miner.pole_module import pole_web3
from pole_chain.clients.data_node import post_task, release, status
from pole_chain.devnet.node_process import child_environment
from tests.conftest import dev_call
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID, MINER_BOND, UNBOND_DELAY

ACCOUNTS = dev_accounts()
POSTER, BONDED, UNBONDED = ACCOUNTS[0], ACCOUNTS[1], ACCOUNTS[2]
WAIT_S = 60.0


@pytest.fixture
def w3(snapshot_w3):
    return snapshot_w3


def pole(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pole_chain", *args],
        env=dict(child_environment(), **(env or {})),
        capture_output=True, text=True, timeout=timeout,
    )


def announce(w3, account, task_id: int, anchor: bytes) -> SolutionAnnouncement:
    """A miner's signed announcement for the task at its anchor block, sent to the node."""
    announcement = SolutionAnnouncement.sign(
        chain_id=CHAIN_ID, task_id=task_id, anchor_hash=anchor,
        model_commitment=keccak(account.address.encode() + anchor), train_bps=9500,
        private_key=account.key,
    )
    assert w3.pole.announce(announcement.encode()) is True
    return announcement


def post(w3, workdir, **overrides) -> int:
    params = dict(dataset="iris", model="logreg", reward_wei=10**18, min_train_bps=5000,
                  time_limit_s=300, solutions_wanted=2, workdir=workdir)
    params.update(overrides)
    return post_task(w3, POSTER, **params)


def test_an_unbonded_miners_announcement_is_left_out_and_a_bonded_ones_admitted(w3, tmp_path):
    assert ensure_bonded(w3, BONDED) is not None
    assert is_bonded(w3, BONDED.address) and not is_bonded(w3, UNBONDED.address)
    task_id = post(w3, tmp_path)
    anchor = w3.pole.best_task().anchor.hash
    unbonded = announce(w3, UNBONDED, task_id, anchor)  # first in arrival order, still left out
    bonded = announce(w3, BONDED, task_id, anchor)

    summary = status(w3, task_id)
    assert "2 wanted, 2 announced (1 by miners without a bond: not admitted)" in summary

    said: list[str] = []
    outcome = release(w3, POSTER, task_id, tmp_path, progress=said.append)
    assert [a.miner for a in outcome.admitted] == [bonded.miner]
    assert outcome.release.admitted == (bonded.model_commitment,)
    assert [a.miner for a in outcome.unbonded] == [unbonded.miner]
    assert said[0] == (
        f"task {task_id}: not admitting {UNBONDED.address}: the miner holds no bond in the registry"
    )


def test_the_release_command_names_the_miners_it_left_out(w3, devnode, tmp_path):
    ensure_bonded(w3, BONDED)
    task_id = post(w3, tmp_path)
    anchor = w3.pole.best_task().anchor.hash
    announce(w3, BONDED, task_id, anchor)
    announce(w3, UNBONDED, task_id, anchor)
    done = pole("task", "release", str(task_id), "--rpc", devnode.url,
                "--key", POSTER.key.hex(), "--workdir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "admits 1 solution(s)" in lines[0]
    assert lines[1] == f"  {BONDED.address}  train 95.00 %"
    assert lines[2] == f"  left out: {UNBONDED.address} holds no miner bond"


class MinerProcess:
    """`pole mine` as a user starts it, its stderr read line by line."""

    def __init__(self, url: str, key: bytes) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pole_chain", "mine", "--rpc", url, "--key", key.hex(),
             "--no-progress", "--poll", "0.1"],
            env=child_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line.rstrip("\n"))

    def wait_line(self, fragment: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.lines.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"no {fragment!r} line; the miner said:\n" + "\n".join(self.lines))

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=WAIT_S)


def test_pole_mine_bonds_on_its_first_start_only(w3, devnode):
    miner = ACCOUNTS[5]
    assert not is_bonded(w3, miner.address)
    first = MinerProcess(devnode.url, miner.key)
    try:
        bonded_line = first.wait_line("in the task registry")
        first.wait_line("mining as")
    finally:
        assert first.stop() == 0
    assert "bonded 1 ETH in the task registry (transaction 0x" in bonded_line
    assert bond_state(w3, miner.address).amount == MINER_BOND
    nonce = w3.eth.get_transaction_count(miner.address)

    second = MinerProcess(devnode.url, miner.key)
    try:
        second.wait_line("mining as")
    finally:
        assert second.stop() == 0
    assert "miner bond: bonded with 1 ETH" in "\n".join(second.lines)
    assert not any("in the task registry" in line for line in second.lines), second.lines
    assert w3.eth.get_transaction_count(miner.address) == nonce  # nothing sent the second time
    assert bond_state(w3, miner.address).amount == MINER_BOND


def test_an_unfunded_key_cannot_bond_and_hears_so_in_one_line(w3, devnode):
    stranger = Account.create()
    done = pole("mine", "--rpc", devnode.url, "--key", stranger.key.hex(), "--once")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"pole mine: error: {stranger.address} holds 0 ETH; bonding as a miner takes 1 ETH plus "
        "gas: fund this key (on a devnet, `pole accounts` lists funded keys)"
    )
    assert "Traceback" not in done.stderr


def test_unbond_then_withdraw_after_the_delay(w3, devnode):
    miner = ACCOUNTS[6]
    ensure_bonded(w3, miner)
    key = miner.key.hex()
    unbond = pole("mine", "--rpc", devnode.url, "--key", key, "--unbond")
    assert unbond.returncode == 0, unbond.stderr
    available_at = bond_state(w3, miner.address).unbond_at
    assert available_at == w3.eth.get_block("latest")["timestamp"] + UNBOND_DELAY
    assert unbond.stdout.strip() == (
        f"{miner.address}: unbond requested; no longer admitted by data nodes; withdraw with "
        f"`pole mine --withdraw-bond` from block time {available_at}"
    )
    assert not is_bonded(w3, miner.address)

    early = pole("mine", "--rpc", devnode.url, "--key", key, "--withdraw-bond")
    assert early.returncode == 1
    assert early.stderr.strip() == (
        "pole mine: error: the registry refuses withdraw_bond: unbond delay not over"
    )

    dev_call(w3, "evm_increaseTime", hex(UNBOND_DELAY))
    dev_call(w3, "evm_mine")
    before = w3.eth.get_balance(miner.address)
    withdrawn = pole("mine", "--rpc", devnode.url, "--key", key, "--withdraw-bond")
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert withdrawn.stdout.strip() == f"{miner.address}: withdrew the bond of 1 ETH"
    assert bond_state(w3, miner.address).amount == 0
    assert MINER_BOND - 10**16 < w3.eth.get_balance(miner.address) - before <= MINER_BOND


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_mine_once_against_a_dead_node_gives_up_in_bounded_time():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = pole("mine", "--rpc", url, "--key", ACCOUNTS[7].key.hex(), "--once",
                "--node-timeout", "2")
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"pole mine: error: no PoLe node answers at {url} after 2 s (ConnectionError); is "
        "`pole node` running there?"
    )
    assert "Traceback" not in done.stderr


def test_the_mining_loop_gives_up_on_a_node_that_stops_answering():
    """`--once` sets give_up_after_s: a node that dies mid-run ends the loop, bounded."""
    w3 = pole_web3(f"http://127.0.0.1:{free_port()}")
    miner = Miner(w3, ACCOUNTS[7], MinerConfig(poll_s=0.1, give_up_after_s=1.0))
    started = time.monotonic()
    with pytest.raises(NodeUnreachable, match="the node has not answered for 1 s"):
        miner.run(once=True)
    assert 1.0 <= time.monotonic() - started < 10
