"""What a new user tripped on: each fixed, each checked with real processes over real HTTP.

A real `pole node --dev` per module (each test on an evm_snapshot); `pole ...` and the
examples run as child processes the way a user runs them.
"""
from __future__ import annotations

import logging
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import encode_hex, keccak

from miner.bonds import ensure_bonded
from miner.messages import SolutionAnnouncement
from miner.mining import Miner, MinerConfig, Outcome
from pole_chain.clients.data_node import node_time, post_task
from pole_chain.devnet.node_process import PACKAGE_ROOT, child_environment
from tests.conftest import dev_call
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID
from vm_hooks.task import TaskStatus

ACCOUNTS = dev_accounts()
POSTER, MINER = ACCOUNTS[0], ACCOUNTS[1]
EXAMPLES = PACKAGE_ROOT / "examples"
WAIT_S = 60.0


@pytest.fixture
def w3(snapshot_w3):
    return snapshot_w3


def pole(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pole_chain", *args],
        env=child_environment(), capture_output=True, text=True, timeout=timeout,
    )


def post(w3, workdir: Path, **overrides) -> int:
    params = dict(dataset="iris", model="logreg", reward_wei=10**18, min_train_bps=5000,
                  time_limit_s=300, solutions_wanted=2, workdir=workdir)
    params.update(overrides)
    return post_task(w3, POSTER, **params)


# --- pole task release --auto ----------------------------------------------------------


def test_auto_release_counts_down_from_the_deadline_by_the_nodes_clock(w3, devnode, tmp_path):
    """The dev node's clock moves 260 s of a 300 s task on; its head's timestamp does not.
    The default wait is half the time left by the node's clock (under 20 s, not the 150 s
    the head's timestamp gives), and the countdown says what it waits for."""
    ensure_bonded(w3, MINER)
    task_id = post(w3, tmp_path)
    anchor = w3.pole.best_task().anchor.hash
    announcement = SolutionAnnouncement.sign(
        chain_id=CHAIN_ID, task_id=task_id, anchor_hash=anchor,
        model_commitment=keccak(b"model" + anchor), train_bps=9000, private_key=MINER.key,
    )
    assert w3.pole.announce(announcement.encode()) is True
    head_time = w3.eth.get_block("latest")["timestamp"]
    dev_call(w3, "evm_increaseTime", hex(260))
    assert w3.eth.get_block("latest")["timestamp"] == head_time  # the head stands still

    started = time.monotonic()
    done = pole("task", "release", str(task_id), "--auto", "--rpc", devnode.url,
                "--key", encode_hex(POSTER.key), "--workdir", str(tmp_path), timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 40
    progress = done.stderr.splitlines()
    first = re.fullmatch(
        rf"task {task_id}: 1 of 2 solution\(s\) announced; waiting for 1 more, (\d+) s left "
        "before releasing to the ones announced",
        progress[0],
    )
    assert first is not None, progress
    assert 0 < int(first.group(1)) <= 20
    waited = re.fullmatch(rf"task {task_id}: waited (\d+) s, releasing to 1", progress[-1])
    assert waited is not None and int(waited.group(1)) <= 20, progress
    assert "admits 1 solution(s)" in done.stdout


def test_releasing_an_unknown_task_is_one_line(devnode, tmp_path):
    done = pole("task", "release", "99", "--rpc", devnode.url, "--key", encode_hex(POSTER.key),
                "--workdir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr == "pole task release: error: there is no task 99\n"


def test_posting_from_an_unfunded_key_is_one_line(devnode, tmp_path):
    stranger = Account.create()
    done = pole("task", "post", "--dataset", "iris", "--model", "logreg", "--rpc", devnode.url,
                "--key", encode_hex(stranger.key), "--workdir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr == (
        f"pole task post: error: {stranger.address} holds 0 ETH; the reward is 1 ETH plus gas: "
        "fund this key (on a devnet, `pole accounts` lists funded keys)\n"
    )


# --- pole task list ---------------------------------------------------------------------


def test_task_list_shows_every_task_with_state_reward_value_and_deadline(w3, devnode, tmp_path):
    assert pole("task", "list", "--rpc", devnode.url).stdout == "no tasks\n"
    first = post(w3, tmp_path, reward_wei=3 * 10**18, time_limit_s=300)
    dev_call(w3, "evm_increaseTime", hex(301))
    dev_call(w3, "evm_mine")  # expires the first task
    second = post(w3, tmp_path, reward_wei=10**18, time_limit_s=100)
    assert w3.pole.get_task(first).status is TaskStatus.EXPIRED
    clock_before = node_time(w3)
    done = pole("task", "list", "--rpc", devnode.url)
    clock_after = node_time(w3)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    ago = re.fullmatch(
        rf"task {first}  expired  reward 3 ETH, value 0\.01 ETH/s, deadline (\d+) s ago", lines[0]
    )
    deadlines = [w3.pole.get_task(first).deadline, w3.pole.get_task(second).deadline]
    assert ago is not None and (
        clock_before - deadlines[0] <= int(ago.group(1)) <= clock_after - deadlines[0]
    ), lines
    left = re.fullmatch(
        rf"task {second}  open     reward 1 ETH, value 0\.01 ETH/s, deadline in (\d+) s", lines[1]
    )
    assert left is not None and (
        deadlines[1] - clock_after <= int(left.group(1)) <= deadlines[1] - clock_before
    ), lines


# --- the miner's log ----------------------------------------------------------------------


def test_no_open_task_is_logged_once_not_on_every_new_block(w3, caplog):
    miner = Miner(w3, MINER, MinerConfig(poll_s=0.1, progress=False))
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        for _ in range(4):
            assert miner.step().outcome is Outcome.NO_TASK
            dev_call(w3, "evm_mine")  # a new head with nothing to mine, as idle blocks come
    lines = [r.getMessage() for r in caplog.records if r.name == "pole.miner"]
    assert len(lines) == 1 and lines[0].endswith(": no open task"), lines


# --- examples -----------------------------------------------------------------------------


def run_example(name: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd,
        env=dict(child_environment(), **(env or {})),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_examples_take_the_node_url_and_watch_waits_for_a_task_not_posted_yet(
    w3, devnode, tmp_path
):
    watcher = run_example("watch_task.py", "1", "--rpc", devnode.url, cwd=tmp_path)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert lines.get(timeout=WAIT_S) == "task 1 does not exist yet; waiting for it to be posted"
        poster = run_example("post_task.py", cwd=tmp_path, env={"POLE_RPC": devnode.url})
        out, err = poster.communicate(timeout=WAIT_S)
        assert poster.returncode == 0, err
        task = w3.pole.get_task(1)
        assert out == f"task 1: open, reward 1 ETH, deadline {task.deadline}\n"
        assert (tmp_path / "data-node" / "tasks" / "1" / "test_set.plds").is_file()
        dev_call(w3, "evm_increaseTime", hex(task.time_limit + 1))
        dev_call(w3, "evm_mine")  # nobody mines it: the next block expires it
        assert watcher.wait(timeout=WAIT_S) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
    reader.join(timeout=WAIT_S)  # the watcher exited: its output is all read
    printed = []
    while not lines.empty():
        printed.append(lines.get())
    assert printed[-1] == "task 1 expired: the reward went back to the poster", printed


def test_an_example_without_a_node_says_so_in_one_line(tmp_path):
    url = "http://127.0.0.1:9"  # the discard port: nothing listens there
    poster = run_example("post_task.py", "--rpc", url, cwd=tmp_path)
    _, err = poster.communicate(timeout=WAIT_S)
    assert poster.returncode == 1
    assert err == f"post_task.py: no PoLe node answers at {url} (start one: pole node --dev)\n"


def test_gitignore_covers_what_the_examples_write():
    written = ["data-node/tasks/1/test_set.plds", "model/model.safetensors", "model/meta.json"]
    done = subprocess.run(["git", "check-ignore", *written], cwd=PACKAGE_ROOT,
                          capture_output=True, text=True)
    assert done.stdout.splitlines() == written
