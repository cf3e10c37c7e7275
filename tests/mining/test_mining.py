"""The miner process, one height at a time, against real `pole node --dev` processes.

The test plays the data node (posts the task, uploads blobs, signs the release) and drives
`Miner.step()` / `Miner.run()`; the miner talks to the node only over HTTP through web3
(`w3.pole`), and a web3 middleware logs its pole_* calls. Everything the miner meets is
produced for real: new heads are dev blocks (evm_mine), time passes with evm_increaseTime,
outages are a node process stopped and started again on the same port, a node that lost
data has a blob file damaged on its disk.
Each test runs on an evm_snapshot of one module-wide node and reverts it afterwards; the
outage tests have a node of their own, restarted on the same port and data directory.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

import pytest
from eth_utils import decode_hex, encode_hex, keccak, to_canonical_address
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.middleware import Web3Middleware

from contracts import TASK_REGISTRY, load_artifact
from miner import mine_cli, mining
from miner.bonds import ensure_bonded
from miner.datasets import Dataset, encode_dataset, load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model
from miner.integer_model import decode_model
from miner.messages import Release, SolutionAnnouncement, commitment_for
from miner.mining import HeightResult, Miner, MinerConfig, Outcome
from miner.model_spec import build_spec, model_spec_canonical_bytes, model_spec_digest
from miner.sml import LocalSML, model_sml, sml_for
from miner.training import Hyperparams
from miner.pole_module import attach_pole, error_message, pole_web3
from pole_chain.cli.main import build_parser
from vm_hooks.params import CHAIN_ID, REGISTRY_ADDRESS
from vm_hooks.seal import pole_score
from vm_hooks.genesis import dev_accounts
from pole_chain.devnet.node_process import NodeProcess, child_environment
from tests.conftest import dev_call as dev
from vm_hooks.task import Task, TaskStatus
from tests.mining.stderr_lines import StderrLines

ACCOUNTS = dev_accounts()
POSTER, MINER, OTHER = ACCOUNTS[1], ACCOUNTS[2], ACCOUNTS[3]
POSTER_ADDRESS = to_canonical_address(POSTER.address)
MINER_ADDRESS = to_canonical_address(MINER.address)
OTHER_ADDRESS = to_canonical_address(OTHER.address)
TARGET_BPS = 9000
ETHER = 10**18
WAIT_S = 30.0
POLL_S = 0.02


# --------------------------------------------------------------------------------------
# Task data
# --------------------------------------------------------------------------------------


def task_data(seed: int) -> SimpleNamespace:
    """A digits split: training set, secret test set, the MLP spec, their canonical bytes.

    Each seed gives other blobs (other digests), for tests that must start with a blob the
    node has never seen or that damage the node's copy of one.
    """
    train, test = split_dataset(load_builtin("digits"), 0.2, seed=seed, test_salt=bytes(range(32)))
    spec = build_spec("mlp", train.d, train.num_classes)
    data = SimpleNamespace(
        train=train,
        test=test,
        spec=spec,
        train_blob=encode_dataset(train),
        test_blob=encode_dataset(test),
        spec_blob=model_spec_canonical_bytes(spec),
    )
    data.train_digest = keccak(data.train_blob)
    data.test_digest = keccak(data.test_blob)
    return data


@pytest.fixture(scope="module")
def digits():
    return task_data(1)


# --------------------------------------------------------------------------------------
# Nodes and their Web3 connections
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    params: tuple
    error: Any  # None: the node answered; else the exception raised or the JSON-RPC error


class RecordedWeb3:
    """A Web3 with `w3.pole` whose pole_* calls a web3 middleware logs.

    `before(method, action)` runs `action` once, right before the next call of `method`
    goes out: a test stops the node there to fail exactly that call for real.
    """

    def __init__(self, w3: Web3) -> None:
        self.w3 = attach_pole(w3)
        self.calls: list[Call] = []
        self._before: dict[str, Callable[[], None]] = {}
        w3.middleware_onion.add(lambda w3: _Recording(w3, self), name="pole call log")

    def before(self, method: str, action: Callable[[], None]) -> None:
        self._before[method] = action

    def record(self, method: str, params: Any, make_request: Callable[..., Any]) -> Any:
        action = self._before.pop(method, None)
        if action is not None:
            action()
        try:
            response = make_request(method, params)
        except Exception as error:
            self.calls.append(Call(method, tuple(params), error))
            raise
        self.calls.append(Call(method, tuple(params), response.get("error")))
        return response

    def made(self, method: str, *, ok: Optional[bool] = None) -> list[Call]:
        return [
            c for c in list(self.calls)
            if c.method == method and (ok is None or (c.error is None) == ok)
        ]

    def blob_requests(self) -> list[bytes]:
        return [decode_hex(c.params[0]) for c in self.made("pole_getBlob")]


class _Recording(Web3Middleware):
    """Hands each pole_* request to its RecordedWeb3."""

    def __init__(self, w3: Web3, recorded: RecordedWeb3) -> None:
        super().__init__(w3)
        self.recorded = recorded

    def wrap_make_request(self, make_request: Callable[..., Any]) -> Callable[..., Any]:
        def middleware(method: str, params: Any) -> Any:
            if not method.startswith("pole_"):
                return make_request(method, params)
            return self.recorded.record(method, params, make_request)

        return middleware


@pytest.fixture
def w3(snapshot_w3):
    """The data node's (and the test's) Web3 (tests/conftest.py: reverted after the test)."""
    return snapshot_w3


@pytest.fixture
def miner_node(devnode):
    """The miner's own connection to the node, recording what it asks."""
    return RecordedWeb3(devnode.web3())


def blob_file(node: NodeProcess, digest: bytes) -> Path:
    """Where the node keeps a blob (pole_chain/blob_store.py: root/<2 hex>/<64 hex>)."""
    name = digest.hex()
    path = Path(node.datadir) / "blobs" / name[:2] / name
    assert path.is_file(), path
    return path


def damage_blob(node: NodeProcess, digest: bytes) -> None:
    """Corrupt the node's copy of a blob on disk: it re-hashes on read and reports it missing."""
    blob_file(node, digest).write_bytes(b"damaged on disk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RestartableNode:
    """A `pole node --dev` on a fixed port and data directory, stopped and started again."""

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Optional[NodeProcess] = None
        self.down = threading.Event()

    def start(self) -> None:
        self.process = NodeProcess(self.datadir, "--rpc-port", str(self.port)).start()
        assert self.process.url == self.url
        self.down.clear()

    def stop(self) -> None:
        assert self.process is not None
        assert self.process.stop() == 0
        self.down.set()

    def close(self) -> None:
        if self.process is not None and self.process.process.poll() is None:
            self.process.stop()


@pytest.fixture
def restartable(tmp_path):
    node = RestartableNode(tmp_path / "node")
    node.start()
    yield node
    node.close()


# --------------------------------------------------------------------------------------
# The data node's side and the chain controls
# --------------------------------------------------------------------------------------

_REWARD_SALT = itertools.count(1)


def latest(w3: Web3):
    return w3.eth.get_block("latest")


def post_task(
    w3: Web3,
    data,
    *,
    time_limit: int = 600,
    min_train_bps: int = TARGET_BPS,
    model_spec: Optional[bytes] = None,
    upload_training_set: bool = True,
) -> Task:
    """Post a task the way a data node does: public blobs first, then the escrow transaction.

    Each task pays more than any earlier one (and a few wei more than any task a reverted
    test posted, so no two tests mine the same block), so it is the best open task.
    """
    if upload_training_set:
        assert w3.pole.put_blob(data.train_blob) == data.train_digest
    assert w3.pole.put_blob(data.spec_blob) == model_spec_digest(data.spec)
    registry = w3.eth.contract(
        address=Web3.to_checksum_address(REGISTRY_ADDRESS), abi=load_artifact(TASK_REGISTRY).abi
    )
    task_id = registry.functions.task_count().call() + 1
    reward = task_id * ETHER + next(_REWARD_SALT)
    tx_hash = registry.functions.post_task(
        model_spec or model_spec_digest(data.spec),
        data.train_digest,
        data.test_digest,
        min_train_bps,
        time_limit,
        1,
    ).transact({"from": POSTER.address, "value": reward})
    assert w3.eth.get_transaction_receipt(tx_hash).status == 1  # automine: already mined
    task = w3.pole.best_task()
    assert task is not None and task.task_id == task_id and task.reward == reward
    return task


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def wait_announcement(w3: Web3, task: Task, parent: bytes) -> SolutionAnnouncement:
    (raw,) = wait_for(lambda: w3.pole.announcements(task.task_id, bytes(parent)), "the announcement")
    return SolutionAnnouncement.decode(raw).verify(CHAIN_ID)


def sign_release(task: Task, parent: bytes, admitted: list[bytes], *, key=POSTER.key,
                 test_set_digest: Optional[bytes] = None, task_id: Optional[int] = None) -> Release:
    return Release.sign(
        chain_id=CHAIN_ID,
        task_id=task.task_id if task_id is None else task_id,
        anchor_hash=bytes(parent),
        test_set_digest=task.test_set_commitment if test_set_digest is None else test_set_digest,
        admitted=admitted,
        private_key=key,
    )


def release_for(w3: Web3, data, task: Task, parent: bytes, admitted: list[bytes]) -> Release:
    """The data node's release: the test set blob, then the signed admitted list."""
    assert w3.pole.put_blob(data.test_blob) == task.test_set_commitment
    release = sign_release(task, parent, admitted)
    assert w3.pole.release(release.encode())
    return release


# --------------------------------------------------------------------------------------
# Miners
# --------------------------------------------------------------------------------------


def make_miner(w3: Web3, account=MINER, *, clock: Callable[[], float] = time.time,
               **config) -> Miner:
    config.setdefault("poll_s", POLL_S)
    config.setdefault("progress", False)
    return Miner(w3, account, MinerConfig(**config), clock=clock)


class Job:
    """`miner.step()` or `miner.run()` on a thread of its own."""

    def __init__(self, target: Callable[[], Optional[HeightResult]]) -> None:
        self.results: list[Optional[HeightResult]] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._main, args=(target,), daemon=True)
        self.thread.start()

    def _main(self, target) -> None:
        try:
            self.results.append(target())
        except BaseException as error:  # handed to the test by result()
            self.errors.append(error)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def result(self, timeout: float = WAIT_S) -> Optional[HeightResult]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the miner did not finish"
        if self.errors:
            raise self.errors[0]
        (result,) = self.results
        return result


@pytest.fixture
def background():
    """Start miners on threads; every one still running is stopped after the test."""
    started: list[tuple[Miner, Job]] = []

    def start(miner: Miner, *, run: bool = False, once: bool = False) -> Job:
        job = Job((lambda: miner.run(once=once)) if run else miner.step)
        started.append((miner, job))
        return job

    yield start
    for miner, job in started:
        miner.stop()
        job.thread.join(WAIT_S)


def seal_as(account, w3: Web3, data, task: Task, background) -> HeightResult:
    """Another miner wins `task` on the current head (the data node admits it)."""
    head = latest(w3)
    job = background(make_miner(w3, account))
    announcement = wait_announcement(w3, task, head.hash)
    release_for(w3, data, task, head.hash, [announcement.model_commitment])
    result = job.result()
    assert result.outcome is Outcome.SEALED, result
    return result


def miner_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pole.miner"]


def spy_on_training(monkeypatch, after: Callable[[Any], None] = lambda trained: None) -> list:
    """Count real train_model runs (and run `after` on each result) inside the miner."""
    runs: list = []
    real_train = mining.train_model

    def train(*args, **kwargs):
        trained = real_train(*args, **kwargs)
        runs.append(trained)
        after(trained)
        return trained

    monkeypatch.setattr(mining, "train_model", train)
    return runs


# --------------------------------------------------------------------------------------
# One height: sealed
# --------------------------------------------------------------------------------------


def test_height_from_task_to_sealed_block_and_paid(w3, miner_node, digits, caplog, background):
    task = post_task(w3, digits)
    head = latest(w3)
    parent = bytes(head.hash)
    balance_before = w3.eth.get_balance(MINER.address)
    miner = make_miner(miner_node.w3)
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        job = background(miner)
        announcement = wait_announcement(w3, task, parent)
        release = release_for(w3, digits, task, parent, [announcement.model_commitment])
        result = job.result()
    assert result.outcome is Outcome.SEALED, result
    assert result.finished_attempt and result.head_hash == parent and result.task_id == task.task_id

    # The announcement: signed by the miner for this task and parent, the train claim.
    assert announcement.miner == MINER_ADDRESS and announcement.anchor_hash == parent
    assert announcement.task_id == task.task_id and announcement.train_bps >= TARGET_BPS
    commitment = announcement.model_commitment
    assert result.commitment == commitment and result.train_bps == announcement.train_bps

    # The block on the chain: the seal says what consensus recomputed from the revealed blob.
    block = latest(w3)
    assert bytes(block.hash) == result.block_hash and block.number == head.number + 1
    assert block.parentHash == head.hash and block.miner == MINER.address
    assert bytes(block.mixHash) == commitment
    assert int.from_bytes(bytes(block.nonce), "big") == task.task_id
    assert block.difficulty == pole_score(result.test_bps)
    blob = w3.pole.get_model(commitment)
    assert blob is not None and commitment_for(blob, MINER_ADDRESS, parent) == commitment
    model = decode_model(blob)
    sml = sml_for(parent, MINER_ADDRESS, digits.train.d)
    assert result.train_bps == evaluate_integer_model(model, sml, digits.train)
    assert result.test_bps == evaluate_integer_model(model, sml, digits.test) > 8000

    # The task is settled with this solution and the escrow paid to the miner.
    settled = w3.pole.get_task(task.task_id)
    assert settled.status is TaskStatus.SETTLED and settled.result is not None
    assert settled.result.winner == MINER_ADDRESS and settled.result.model_commitment == commitment
    assert (settled.result.train_bps, settled.result.test_bps) == (result.train_bps, result.test_bps)
    assert settled.result.release_digest_prefix == release.digest[:24]
    assert settled.result.block_number == head.number + 1
    assert w3.eth.get_balance(MINER.address) == balance_before + task.reward

    # Two log lines for the height: the announcement and the seal.
    lines = miner_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"task {task.task_id} @ block {head.number}, anchor {head.number} (0x")
    train_percent = f"{result.train_bps / 100:.2f} %"
    assert f"trained to {train_percent} training accuracy in" in lines[0]
    assert f"announced 0x{commitment.hex()[:8]}" in lines[0]
    assert (
        f"train {train_percent}, test {result.test_bps / 100:.2f} %; sealed block "
        f"{head.number + 1} (0x"
    ) in lines[1]

    # The miner's own block is the next head: its task is settled, nothing left to mine.
    assert miner.step().outcome is Outcome.NO_TASK

    # A new task is a new height; its blobs come from the cache, only the test set is fetched.
    fetched = len(miner_node.blob_requests())
    second = post_task(w3, digits)
    head2 = latest(w3)
    job = background(miner)
    announcement2 = wait_announcement(w3, second, head2.hash)
    release_for(w3, digits, second, head2.hash, [announcement2.model_commitment])
    result2 = job.result()
    assert result2.outcome is Outcome.SEALED and result2.head_number == head2.number
    assert miner_node.blob_requests()[fetched:] == [digits.test_digest]
    assert w3.pole.get_task(second.task_id).result.winner == MINER_ADDRESS


# --------------------------------------------------------------------------------------
# Nothing to mine
# --------------------------------------------------------------------------------------


def test_no_task_overdue_expired_and_settled_are_skipped_quietly(
    w3, miner_node, digits, caplog, background
):
    miner = make_miner(miner_node.w3)
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        genesis_head = latest(w3)
        assert w3.pole.best_task() is None
        assert miner.step().outcome is Outcome.NO_TASK
        assert miner.step().outcome is Outcome.NO_TASK  # logged once per head

        # A head whose time is the task's deadline: still open (it expires only after its
        # deadline), but nothing can be trained for it any more.
        task = post_task(w3, digits, time_limit=30)
        dev(w3, "evm_mine", hex(task.deadline))
        at_deadline = latest(w3)
        assert at_deadline.timestamp == task.deadline
        assert w3.pole.best_task().task_id == task.task_id
        overdue = miner.step()
        assert overdue.outcome is Outcome.OVERDUE and overdue.head_number == at_deadline.number
        assert overdue.reason == f"deadline {task.deadline} is not after the head's time {task.deadline}"

        # The next block expires it.
        dev(w3, "evm_mine")
        assert w3.pole.get_task(task.task_id).status is TaskStatus.EXPIRED
        assert miner.step().outcome is Outcome.NO_TASK

        # Another miner settles the next task: on its block there is nothing left.
        other = post_task(w3, digits)
        seal_as(OTHER, w3, digits, other, background)
        assert w3.pole.get_task(other.task_id).result.winner == OTHER_ADDRESS
        assert miner.step().outcome is Outcome.NO_TASK

    # Skipped quietly: nothing fetched, nothing announced, one line per change of state:
    # "no open task" at genesis and again after the overdue task, not on the settled
    # task's block (still no task, so nothing new to say).
    assert miner_node.made("pole_getBlob") == [] and miner_node.made("pole_announce") == []
    lines = miner_lines(caplog)
    assert sum(line.endswith(": no open task") for line in lines) == 2, lines
    assert lines[0] == f"block {genesis_head.number} (0x{bytes(genesis_head.hash).hex()[:8]}…): no open task"
    overdue_line = f"deadline {task.deadline} is not after the head's time {task.deadline}"
    assert sum(line.endswith(overdue_line) for line in lines) == 1, lines
    assert not any("abandoned" in line or "skipped" in line for line in lines), lines


# --------------------------------------------------------------------------------------
# Anchor changes (new heads alone change nothing: docs/PROTOCOL.md, "Task anchor")
# --------------------------------------------------------------------------------------


def test_a_new_best_task_during_training_abandons_before_announcing(
    w3, miner_node, digits, monkeypatch, background
):
    task = post_task(w3, digits)
    head = latest(w3)
    # A new head changes nothing; a better task posted while the miner trains moves the anchor.
    posted: list[Task] = []

    def new_best(trained) -> None:
        if not posted:
            dev(w3, "evm_mine")
            posted.append(post_task(w3, digits))

    runs = spy_on_training(monkeypatch, new_best)
    miner = make_miner(miner_node.w3)
    result = miner.step()
    assert result.outcome is Outcome.ANCHOR_CHANGED and not result.announced
    assert result.reason.startswith("best task or anchor changed during training")
    assert len(runs) == 1 and runs[0].met_target
    assert w3.pole.announcements(task.task_id, bytes(head.hash)) == []
    assert miner_node.made("pole_announce") == []

    # The new best task, at its own anchor, is worked on next, behind that anchor's SML.
    better = posted[0]
    assert better.anchor.hash == bytes(latest(w3).hash) != bytes(head.hash)
    job = background(miner)
    announcement = wait_announcement(w3, better, better.anchor.hash)
    assert announcement.miner == MINER_ADDRESS and len(runs) == 2
    miner.stop()
    assert job.result().outcome is Outcome.STOPPED


def test_a_sealed_block_that_left_the_chain_is_sealed_again_on_the_new_head(
    w3, miner_node, digits, caplog, background, monkeypatch
):
    """The miner's block leaves the chain while its task stays best (here the dev node
    rewinds past it and mines an idle block in its place, as when its parent loses to a
    heavier branch): the miner seals the same model, same commitment, on the new head,
    without training again; the release it holds still names the task's anchor."""
    task = post_task(w3, digits)
    anchor = latest(w3)
    before_seal = dev(w3, "evm_snapshot")
    miner = make_miner(miner_node.w3)
    runs = spy_on_training(monkeypatch)
    job = background(miner)
    announcement = wait_announcement(w3, task, anchor.hash)
    release_for(w3, digits, task, anchor.hash, [announcement.model_commitment])
    first = job.result()
    assert first.outcome is Outcome.SEALED and latest(w3).number == anchor.number + 1

    assert dev(w3, "evm_revert", before_seal) is True
    dev(w3, "evm_mine")  # an idle block where the miner's was: the task is open again
    idle = latest(w3)
    assert idle.number == anchor.number + 1 and bytes(idle.hash) != first.block_hash
    assert w3.pole.get_task(task.task_id).status is TaskStatus.OPEN
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        again = miner.step()
    assert again.outcome is Outcome.SEALED, again
    assert again.commitment == first.commitment and again.test_bps == first.test_bps
    block = latest(w3)
    assert bytes(block.hash) == again.block_hash and block.parentHash == idle.hash
    settled = w3.pole.get_task(task.task_id)
    assert settled.status is TaskStatus.SETTLED
    assert settled.result.model_commitment == first.commitment and settled.result.block_number == idle.number + 1
    assert len(runs) == 1  # trained once, sealed twice
    assert any(f"is not in the chain at block {idle.number}; sealing the same model again" in line
               for line in miner_lines(caplog))


def test_training_hook_notices_a_new_best_task_not_a_new_head(w3, miner_node, digits, monkeypatch):
    """train_model's `should_stop` hook asks the node, at most once per poll interval."""
    task = post_task(w3, digits)
    head = latest(w3)
    poll_s = 0.5
    answers: list[bool] = []
    real_train = mining.train_model

    def train_with_hook(*args, should_stop, **kwargs):
        time.sleep(poll_s * 1.1)
        answers.append(should_stop())  # asks the node: same task, same anchor
        dev(w3, "evm_mine")
        answers.append(should_stop())  # within the poll interval: does not ask yet
        time.sleep(poll_s * 1.1)
        answers.append(should_stop())  # asks again: a new head, the same anchor
        post_task(w3, digits)
        time.sleep(poll_s * 1.1)
        answers.append(should_stop())  # asks again: another task is the best
        return real_train(*args, should_stop=should_stop, **kwargs)

    monkeypatch.setattr(mining, "train_model", train_with_hook)
    result = make_miner(miner_node.w3, poll_s=poll_s).step()
    assert answers == [False, False, False, True]
    assert result.outcome is Outcome.ANCHOR_CHANGED and not result.announced
    assert w3.pole.announcements(task.task_id, bytes(head.hash)) == []


def test_new_heads_while_waiting_for_the_release_change_nothing(
    w3, miner_node, digits, background
):
    task = post_task(w3, digits)
    anchor = latest(w3)
    miner = make_miner(miner_node.w3)
    job = background(miner)
    announcement = wait_announcement(w3, task, anchor.hash)
    dev(w3, "evm_mine")
    dev(w3, "evm_mine")  # blocks between the anchor and the PoLe block
    new_head = latest(w3)
    release_for(w3, digits, task, anchor.hash, [announcement.model_commitment])
    result = job.result()
    assert result.outcome is Outcome.SEALED and result.commitment == announcement.model_commitment
    block = w3.eth.get_block(result.block_hash)
    assert bytes(block["parentHash"]) == bytes(new_head.hash)  # sealed on the current head
    assert w3.pole.get_task(task.task_id).result.winner == MINER_ADDRESS


def test_a_new_best_task_while_waiting_for_the_release_abandons(
    w3, miner_node, digits, background
):
    task = post_task(w3, digits)
    anchor = latest(w3)
    miner = make_miner(miner_node.w3)
    job = background(miner)
    announcement = wait_announcement(w3, task, anchor.hash)
    better = post_task(w3, digits)
    result = job.result()
    assert result.outcome is Outcome.ANCHOR_CHANGED and result.announced
    assert result.commitment == announcement.model_commitment
    assert f"no longer task {task.task_id} at anchor {anchor.number}" in result.reason
    assert w3.pole.get_model(announcement.model_commitment) is None  # nothing revealed

    # The new best task is worked on next, at its anchor.
    job = background(miner)
    again = wait_announcement(w3, better, better.anchor.hash)
    assert again.miner == MINER_ADDRESS and again.train_bps >= TARGET_BPS
    miner.stop()
    assert job.result().outcome is Outcome.STOPPED


# --------------------------------------------------------------------------------------
# The release
# --------------------------------------------------------------------------------------


def test_release_that_does_not_admit_us_is_abandoned(w3, miner_node, digits, caplog, background):
    task = post_task(w3, digits)
    head = latest(w3)
    miner = make_miner(miner_node.w3)
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        job = background(miner)
        announcement = wait_announcement(w3, task, head.hash)
        assert announcement.miner == MINER_ADDRESS
        release_for(w3, digits, task, head.hash, [keccak(b"another miner's model")])
        result = job.result()
    assert result.outcome is Outcome.NOT_ADMITTED and result.announced and result.finished_attempt
    assert f"not {encode_hex(announcement.model_commitment)}" in result.reason
    # The weights stay private: nothing revealed, nothing sealed, the task still open.
    assert miner_node.made("pole_revealModel") == [] and miner_node.made("pole_buildBlock") == []
    assert w3.pole.get_model(announcement.model_commitment) is None
    assert latest(w3).hash == head.hash
    assert w3.pole.get_task(task.task_id).status is TaskStatus.OPEN
    assert any("abandoned: release 0x" in line for line in miner_lines(caplog))
    # This head is done: no retraining, no second announcement.
    assert miner.step().outcome is Outcome.SEEN
    assert len(miner_node.made("pole_announce")) == 1


def forged(genuine: Release) -> Release:
    """`genuine`, signed by someone else, with the poster's address put in."""
    return Release(**{**genuine.as_dict(), "poster": POSTER_ADDRESS})


# Releases an honest node refuses to store, so the miner's own checks cannot be reached
# through one: each is refused by the node (its message) and by the miner's release check.
BAD_RELEASES = {
    "signed by another key": (
        lambda task, parent, ours: sign_release(task, parent, [ours], key=OTHER.key),
        "was posted by",  # the node and the miner apply one rule: check_release
        f"release signed by {encode_hex(OTHER_ADDRESS)}, task 1 was posted by {encode_hex(POSTER_ADDRESS)}",
    ),
    "another test set": (
        lambda task, parent, ours: sign_release(task, parent, [ours], test_set_digest=keccak(b"other")),
        "does not match the task's commitment",
        "does not match the task's commitment",
    ),
    "forged signature": (
        lambda task, parent, ours: forged(sign_release(task, parent, [ours], key=OTHER.key)),
        "Release signed by 0x[0-9a-f]{40}, claims poster 0x[0-9a-f]{40}",
        "release rejected: ",
    ),
    "another task": (
        lambda task, parent, ours: sign_release(task, parent, [ours], task_id=task.task_id + 1),
        "is not the anchor of task",
        "expected task",
    ),
}


def test_releases_not_matching_the_task_are_refused_by_node_and_miner(
    w3, miner_node, digits, background
):
    """The miner's release check (`Miner._check_release`) is called directly with real
    signed releases, on the work of a real height stopped while waiting for its release."""
    task = post_task(w3, digits)
    head = latest(w3)
    parent = bytes(head.hash)
    miner = make_miner(miner_node.w3)
    job = background(miner)
    announcement = wait_announcement(w3, task, parent)
    miner.stop()
    assert job.result().outcome is Outcome.STOPPED
    work = miner._work  # kept: a stopped step is not done with its head
    assert work is not None and work.announced and work.commitment == announcement.model_commitment
    ours = work.commitment

    for name, (make, node_says, miner_says) in BAD_RELEASES.items():
        bad = make(task, parent, ours)
        with pytest.raises(Web3RPCError) as refused:
            w3.pole.release(bad.encode())
        assert re.search(node_says, error_message(refused.value)), (name, refused.value)
        with pytest.raises(mining._Stop) as stop:
            miner._check_release(bad.encode(), work)
        assert stop.value.outcome is Outcome.BAD_RELEASE, name
        assert miner_says in stop.value.reason, (name, stop.value.reason)

    # Released for another anchor: a node serves releases by (task, anchor), so this one
    # cannot reach the miner through it either.
    with pytest.raises(mining._Stop) as stop:
        miner._check_release(sign_release(task, keccak(b"another anchor"), [ours]).encode(), work)
    assert stop.value.outcome is Outcome.BAD_RELEASE and "at anchor" in stop.value.reason
    # A genuine release that does not list us: not admitted.
    with pytest.raises(mining._Stop) as stop:
        miner._check_release(sign_release(task, parent, [keccak(b"someone else")]).encode(), work)
    assert stop.value.outcome is Outcome.NOT_ADMITTED
    # The genuine release passes, and it is what the node serves.
    genuine = release_for(w3, digits, task, parent, [ours])
    assert miner._check_release(w3.pole.get_release(task.task_id, parent), work) == genuine


def test_malformed_test_set_in_the_release_is_refused(w3, miner_node, digits, background):
    """A data node can commit to any bytes as its test set: the node stores them, the miner
    refuses a test set that is not a dataset."""
    garbage = b"not a dataset" * 10
    data = SimpleNamespace(**{**vars(digits), "test_blob": garbage, "test_digest": keccak(garbage)})
    task = post_task(w3, data)
    head = latest(w3)
    job = background(make_miner(miner_node.w3))
    announcement = wait_announcement(w3, task, head.hash)
    release_for(w3, data, task, head.hash, [announcement.model_commitment])
    result = job.result()
    assert result.outcome is Outcome.BAD_RELEASE and result.announced
    assert result.reason.startswith("test set is malformed: ")
    assert w3.pole.get_model(announcement.model_commitment) is None
    assert miner_node.made("pole_buildBlock") == []


def test_test_set_of_another_dataset_is_refused(w3, miner_node, digits, background):
    iris = load_builtin("iris")
    data = SimpleNamespace(**{**vars(digits), "test_blob": encode_dataset(iris),
                              "test_digest": keccak(encode_dataset(iris))})
    task = post_task(w3, data)
    head = latest(w3)
    job = background(make_miner(miner_node.w3))
    announcement = wait_announcement(w3, task, head.hash)
    release_for(w3, data, task, head.hash, [announcement.model_commitment])
    result = job.result()
    assert result.outcome is Outcome.BAD_RELEASE
    assert result.reason == "test set has 4 features / 3 classes, training set 64 / 10"
    assert miner_node.made("pole_revealModel") == []


def test_no_release_by_the_deadline_gives_up(w3, miner_node, digits, background):
    """The poster never answers; dev time passes (evm_increaseTime) and the miner's clock
    follows the dev chain's clock."""
    task = post_task(w3, digits, time_limit=60)
    head = latest(w3)
    offset = [int(dev(w3, "evm_increaseTime", hex(0)))]

    def clock() -> float:
        return time.time() + offset[0]

    miner = make_miner(miner_node.w3, clock=clock)
    give_up_at = task.deadline + mining.RELEASE_GRACE_S
    job = background(miner)
    announcement = wait_announcement(w3, task, head.hash)

    # Past the deadline but within the grace: a poster may release at its deadline.
    offset[0] = int(dev(w3, "evm_increaseTime", hex(int(give_up_at - clock()) - 2)))
    assert task.deadline < clock() < give_up_at
    time.sleep(10 * POLL_S)
    assert job.alive

    offset[0] = int(dev(w3, "evm_increaseTime", hex(4)))
    result = job.result()
    assert clock() > give_up_at
    assert result.outcome is Outcome.DEADLINE_PASSED and result.announced
    assert result.reason == f"no release by the deadline {task.deadline}"
    assert result.commitment == announcement.model_commitment
    assert miner.step().outcome is Outcome.SEEN  # this head is done
    # The chain agrees: the next block expires the task and the miner has nothing to do.
    dev(w3, "evm_mine")
    assert w3.pole.get_task(task.task_id).status is TaskStatus.EXPIRED
    assert miner.step().outcome is Outcome.NO_TASK


def test_test_set_missing_on_the_node_is_waited_for(w3, miner_node, devnode, background):
    """The node has the release but lost the test set (damaged on its disk): the miner
    keeps asking until the data node uploads it again, then seals."""
    data = task_data(2)
    task = post_task(w3, data)
    head = latest(w3)
    job = background(make_miner(miner_node.w3))
    announcement = wait_announcement(w3, task, head.hash)
    assert w3.pole.put_blob(data.test_blob) == data.test_digest
    damage_blob(devnode, data.test_digest)  # still listed: the node accepts the release
    w3.pole.release(sign_release(task, head.hash, [announcement.model_commitment]).encode())

    def failed_test_set_requests() -> int:
        return sum(1 for c in miner_node.made("pole_getBlob", ok=False)
                   if c.params[0] == encode_hex(data.test_digest))

    wait_for(lambda: failed_test_set_requests() >= 3, "the miner asking for the test set")
    assert job.alive
    assert w3.pole.put_blob(data.test_blob) == data.test_digest
    result = job.result()
    assert result.outcome is Outcome.SEALED, result
    assert w3.pole.get_task(task.task_id).result.winner == MINER_ADDRESS


# --------------------------------------------------------------------------------------
# Reveal and seal
# --------------------------------------------------------------------------------------


def test_refused_seal_is_reported_with_the_node_reason(
    w3, miner_node, devnode, caplog, background
):
    """Admitted, but the node cannot verify the seal: it lost the training set (damaged on
    its disk) after the miner, who keeps its copy, trained on it."""
    data = task_data(3)
    task = post_task(w3, data)
    head = latest(w3)
    miner = make_miner(miner_node.w3)
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        job = background(miner)
        announcement = wait_announcement(w3, task, head.hash)
        damage_blob(devnode, data.train_digest)
        release_for(w3, data, task, head.hash, [announcement.model_commitment])
        result = job.result()
    assert result.outcome is Outcome.REFUSED and result.finished_attempt
    assert result.reason == (
        f"PoLe block refused: training set {data.train_digest.hex()} is not available"
    )
    assert result.test_bps is not None and result.test_bps > 8000
    (seal,) = miner_node.made("pole_buildBlock")
    assert seal.error["code"] == -32010  # pole_buildBlock's "seal refused" (docs/RPC-POLE.md)
    assert miner_node.made("pole_submitBlock") == []  # nothing signed
    assert latest(w3).hash == head.hash and w3.pole.get_task(task.task_id).status is TaskStatus.OPEN
    assert w3.pole.get_model(announcement.model_commitment) is not None  # revealed before the seal
    line = miner_lines(caplog)[-1]
    assert f"test {result.test_bps / 100:.2f} %; node refused: PoLe block refused" in line
    assert miner.step().outcome is Outcome.SEEN


# --------------------------------------------------------------------------------------
# An unreachable node
# --------------------------------------------------------------------------------------


def test_unreachable_node_is_retried_with_back_off_and_logged_once(
    restartable, digits, caplog, background
):
    data_node = pole_web3(restartable.url)
    task = post_task(data_node, digits)
    head = latest(data_node)
    restartable.stop()
    miner = make_miner(RecordedWeb3(pole_web3(restartable.url)).w3, poll_s=0.05)

    def errors():
        return [r for r in caplog.records if r.name == "pole.miner" and r.getMessage().startswith("node error:")]

    with caplog.at_level(logging.DEBUG, logger="pole.miner"):
        job = background(miner, run=True, once=True)
        wait_for(lambda: len(errors()) >= 5, "five failed attempts")
        restartable.start()
        announcement = wait_announcement(data_node, task, head.hash)
        release_for(data_node, digits, task, head.hash, [announcement.model_commitment])
        result = job.result()
    assert result is not None and result.outcome is Outcome.SEALED
    assert data_node.pole.get_task(task.task_id).result.winner == MINER_ADDRESS

    failures = errors()
    assert all(r.getMessage().startswith("node error: cannot connect to the node; retrying")
               for r in failures)
    # One warning, then quiet retries, each after twice the wait of the one before.
    assert [r.levelno for r in failures] == [logging.WARNING] + [logging.DEBUG] * (len(failures) - 1)
    gaps = [b.created - a.created for a, b in zip(failures, failures[1:])]
    for index, gap in enumerate(gaps):
        assert gap >= 0.05 * 2**index * 0.95, gaps
    recovered = [line for line in miner_lines(caplog) if line.startswith("node answers again")]
    assert recovered == [f"node answers again after {len(failures)} failed attempt(s)"]


def test_node_outages_after_training_are_resumed_without_retraining(
    restartable, digits, monkeypatch, caplog, background
):
    """The node goes away right before the announcement and again right before the seal:
    the miner retries each call and never trains twice."""
    data_node = pole_web3(restartable.url)
    task = post_task(data_node, digits)
    head = latest(data_node)
    miner_node = RecordedWeb3(pole_web3(restartable.url))
    miner_node.before("pole_announce", restartable.stop)
    miner_node.before("pole_submitBlock", restartable.stop)
    runs = spy_on_training(monkeypatch)
    miner = make_miner(miner_node.w3)

    def outage_then_restart(method: str) -> None:
        wait_for(restartable.down.is_set, f"the outage before {method}")
        wait_for(lambda: len(miner_node.made(method, ok=False)) == 1, f"{method} failing")
        restartable.start()

    with caplog.at_level(logging.INFO, logger="pole.miner"):
        job = background(miner, run=True, once=True)
        outage_then_restart("pole_announce")
        announcement = wait_announcement(data_node, task, head.hash)
        release_for(data_node, digits, task, head.hash, [announcement.model_commitment])
        outage_then_restart("pole_submitBlock")
        result = job.result()
    assert result is not None and result.outcome is Outcome.SEALED, result
    assert len(runs) == 1  # trained once
    assert [c.error is None for c in miner_node.made("pole_announce")] == [False, True]
    assert [c.error is None for c in miner_node.made("pole_submitBlock")] == [False, True]
    block = latest(data_node)
    assert bytes(block.hash) == result.block_hash and block.parentHash == head.hash
    settled = data_node.pole.get_task(task.task_id)
    assert settled.result.winner == MINER_ADDRESS
    assert settled.result.model_commitment == announcement.model_commitment
    lines = miner_lines(caplog)
    assert any(line.startswith("node error: cannot connect to the node") for line in lines), lines
    assert any(line.startswith("node answers again after ") for line in lines), lines


def test_node_outage_at_the_end_of_training_does_not_retrain(
    restartable, digits, monkeypatch, background
):
    data_node = pole_web3(restartable.url)
    task = post_task(data_node, digits)
    head = latest(data_node)
    runs = spy_on_training(monkeypatch, lambda trained: restartable.stop() if not runs[1:] else None)
    job = background(make_miner(RecordedWeb3(pole_web3(restartable.url)).w3), run=True, once=True)
    wait_for(restartable.down.is_set, "the outage")
    time.sleep(0.2)
    restartable.start()
    announcement = wait_announcement(data_node, task, head.hash)
    release_for(data_node, digits, task, head.hash, [announcement.model_commitment])
    assert job.result().outcome is Outcome.SEALED
    assert len(runs) == 1


# --------------------------------------------------------------------------------------
# Task data
# --------------------------------------------------------------------------------------


def test_unusable_task_data_is_skipped_and_remembered(w3, miner_node, digits, caplog):
    loose = digits.spec_blob + b" "  # the right spec, but not its canonical JSON
    assert w3.pole.put_blob(loose) == keccak(loose)
    task = post_task(w3, digits, model_spec=keccak(loose))
    miner = make_miner(miner_node.w3)
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        result = miner.step()
    assert result.outcome is Outcome.BAD_TASK and "malformed" in result.reason
    assert result.task_id == task.task_id and not result.announced
    assert miner_node.blob_requests() == [digits.train_digest, keccak(loose)]
    assert any("skipped: model spec 0x" in line for line in miner_lines(caplog))
    assert miner.step().outcome is Outcome.SEEN
    dev(w3, "evm_mine")  # a new head, the same task and anchor: still done
    assert miner.step().outcome is Outcome.SEEN
    post_task(w3, digits, model_spec=keccak(loose))  # a new anchor, the same bad spec
    assert miner.step().outcome is Outcome.BAD_TASK
    assert len(miner_node.blob_requests()) == 2  # not fetched again
    assert miner_node.made("pole_announce") == []


def test_missing_training_set_is_waited_for(w3, miner_node, caplog, background):
    data = task_data(4)  # a training set this node has never seen
    task = post_task(w3, data, upload_training_set=False)
    head = latest(w3)
    miner = make_miner(miner_node.w3)
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        first = miner.step()
        assert miner.step().outcome is Outcome.DATA_MISSING  # not done with the head
    assert first.outcome is Outcome.DATA_MISSING and first.task_id == task.task_id
    assert first.reason.startswith(f"training set 0x{data.train_digest.hex()[:8]}… not available: ")
    assert sum("not available" in line for line in miner_lines(caplog)) == 1  # logged once

    assert w3.pole.put_blob(data.train_blob) == data.train_digest
    job = background(miner)
    announcement = wait_announcement(w3, task, head.hash)
    release_for(w3, data, task, head.hash, [announcement.model_commitment])
    assert job.result().outcome is Outcome.SEALED


def test_spec_for_another_dataset_is_a_bad_task(w3, miner_node, digits):
    blob = model_spec_canonical_bytes(build_spec("mlp", 30, 10))
    assert w3.pole.put_blob(blob) == keccak(blob)
    post_task(w3, digits, model_spec=keccak(blob))
    result = make_miner(miner_node.w3).step()
    assert result.outcome is Outcome.BAD_TASK and "model input has 60 values" in result.reason
    assert miner_node.made("pole_announce") == []


def test_an_encrypted_task_for_an_image_model_trains_behind_the_local_sml(w3, miner_node, background):
    """The miner asks for the keys of its local SML's rows, waits, decrypts relu(S x) with
    them, trains the cnn and seals: consensus re-evaluates on the clear set, revealed with
    the release, behind the same local SML."""
    from miner.encrypted_tasks import KeyRequest, bundle_for, encrypt_training_set

    digits = load_builtin("digits")
    images = Dataset(digits.features[:300], digits.labels[:300], num_classes=10, image_shape=(1, 8, 8))
    test = Dataset(digits.features[300:400], digits.labels[300:400], num_classes=10, image_shape=(1, 8, 8))
    encrypted, msk = encrypt_training_set(images)
    spec = build_spec("cnn", 64, 10, (1, 8, 8))
    data = SimpleNamespace(
        spec=spec, spec_blob=model_spec_canonical_bytes(spec), train_blob=encrypted.encode(),
        test_blob=encode_dataset(test),
    )
    data.train_digest, data.test_digest = keccak(data.train_blob), keccak(data.test_blob)
    task = post_task(w3, data, min_train_bps=5000)
    head = latest(w3)
    miner = make_miner(miner_node.w3)
    waiting = miner.step()
    assert waiting.outcome is Outcome.DATA_MISSING and "requested, not served yet" in waiting.reason
    (raw,) = w3.pole.key_requests(task.task_id, head.hash)
    bundle = bundle_for(msk, KeyRequest.decode(raw).verify(CHAIN_ID), spec.input_shape, private_key=POSTER.key)
    assert w3.pole.put_keys(bundle.encode()) is True

    job = background(miner)
    announcement = wait_announcement(w3, task, head.hash)
    assert w3.pole.put_blob(encode_dataset(images)) == encrypted.clear_digest  # with the release
    release_for(w3, data, task, head.hash, [announcement.model_commitment])
    result = job.result()
    assert result.outcome is Outcome.SEALED, result.reason
    model = decode_model(w3.pole.get_model(announcement.model_commitment))
    sml = model_sml(head.hash, to_canonical_address(MINER.address), spec.input_shape, 64)
    assert isinstance(sml, LocalSML)
    assert evaluate_integer_model(model, sml, images) == announcement.train_bps >= 5000


def test_unreachable_target_is_skipped_for_the_height(w3, miner_node, digits, monkeypatch):
    task = post_task(w3, digits, min_train_bps=10000)
    head = latest(w3)
    runs = spy_on_training(monkeypatch)
    miner = make_miner(miner_node.w3, hyperparams=Hyperparams(max_epochs=2))
    result = miner.step()
    assert result.outcome is Outcome.TARGET_MISSED and "target 100.00 %" in result.reason
    assert "stopped by epochs" in result.reason and runs[0].epochs == 2
    assert w3.pole.announcements(task.task_id, bytes(head.hash)) == []
    assert miner.step().outcome is Outcome.SEEN and len(runs) == 1


def test_training_gets_a_share_of_the_time_left(w3, miner_node, digits, monkeypatch, background):
    """'Now' is the head's time when the chain is ahead of the wall clock (evm_increaseTime)."""
    task = post_task(w3, digits)
    dev(w3, "evm_increaseTime", hex(90))
    dev(w3, "evm_mine")
    head = latest(w3)
    assert head.timestamp >= task.posted_at + 90 and head.timestamp > time.time()
    seen: dict = {}
    real_train = mining.train_model

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(mining, "train_model", spy)
    miner = make_miner(miner_node.w3, train_fraction=0.25, seed=7)
    job = background(miner)
    wait_announcement(w3, task, task.anchor.hash)  # the head moved; the anchor did not
    miner.stop()
    assert job.result().outcome is Outcome.STOPPED
    assert seen["time_limit_s"] == pytest.approx((task.deadline - head.timestamp) * 0.25)
    assert seen["target_train_bps"] == TARGET_BPS and seen["seed"] == 7


def test_stop_ends_run_while_waiting(w3, miner_node, digits, background):
    task = post_task(w3, digits)
    head = latest(w3)
    miner = make_miner(miner_node.w3)
    job = background(miner, run=True)
    wait_announcement(w3, task, head.hash)  # the poster never answers
    miner.stop()
    result = job.result(timeout=5)
    assert result is not None and result.outcome is Outcome.STOPPED and result.announced


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return build_parser("mine").parse_args(["mine", *argv])


def test_cli_flags():
    args = parse("--rpc", "http://127.0.0.1:9999", "--key", "0x01", "--seed", "4", "--lr", "0.01",
                 "--epochs", "7", "--batch-size", "16", "--poll", "0.5", "--once")
    assert (args.seed, args.lr, args.epochs, args.batch_size, args.poll, args.once) == (
        4, 0.01, 7, 16, 0.5, True)
    assert args.run is mine_cli.run
    defaults = parse()
    assert defaults.rpc == "http://127.0.0.1:8545" and defaults.train_fraction == 0.5
    assert not defaults.once


@pytest.mark.parametrize(
    "argv",
    [["--lr", "0"], ["--epochs", "0"], ["--batch-size", "-1"], ["--poll", "nan"],
     ["--train-fraction", "1.5"], ["--weight-bits", "4"], ["--seed", "x"]],
)
def test_cli_rejects_bad_flags(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2


def test_cli_rejects_bad_key_and_url(capsys, monkeypatch):
    monkeypatch.delenv(mine_cli.MINER_KEY_VARIABLE, raising=False)
    assert mine_cli.run(parse()) == 2
    assert "--key" in capsys.readouterr().err
    assert mine_cli.run(parse("--key", "0xzz")) == 2
    assert mine_cli.run(parse("--key", "0x01", "--rpc", "localhost:8545")) == 2


def test_real_node_cli_once_exits_zero_after_sealing(w3, devnode, digits):
    ensure_bonded(w3, OTHER)  # bonded before the task's block: `pole mine` sends nothing on start
    task = post_task(w3, digits)
    head = latest(w3)
    args = parse("--rpc", devnode.url, "--key", encode_hex(OTHER.key), "--once",
                 "--poll", "0.05", "--no-progress", "--seed", "3")
    statuses: list[int] = []
    thread = threading.Thread(target=lambda: statuses.append(mine_cli.run(args)), daemon=True)
    thread.start()
    announcement = wait_announcement(w3, task, head.hash)
    release_for(w3, digits, task, head.hash, [announcement.model_commitment])
    thread.join(WAIT_S)
    assert statuses == [0]
    settled = w3.pole.get_task(task.task_id)
    assert settled.status is TaskStatus.SETTLED and settled.result.winner == OTHER_ADDRESS


def start_miner_process(devnode, account) -> tuple[subprocess.Popen, StderrLines]:
    """`pole mine` against the dev node as a child process (key in its environment), and its
    stderr lines."""
    env = dict(child_environment(), **{mine_cli.MINER_KEY_VARIABLE: encode_hex(account.key)})
    process = subprocess.Popen(
        [sys.executable, "-m", "pole_chain", "mine", "--rpc", devnode.url, "--poll", "0.05",
         "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    return process, StderrLines(process.stderr, WAIT_S)


def test_real_miner_process_keeps_mining_and_stops_cleanly_on_ctrl_c(w3, devnode, digits):
    """`pole mine` as a process: seals, moves on to the next height, exits 0 on SIGINT."""
    ensure_bonded(w3, MINER)  # bonded before the task's block: `pole mine` sends nothing on start
    later = post_task(w3, digits)  # still open after `task` settles: the next height's
    task = post_task(w3, digits)
    head = latest(w3)
    process, stderr = start_miner_process(devnode, MINER)
    wait_line, seen = stderr.wait_line, stderr.seen

    try:
        announced = wait_line(f"task {task.task_id} @ block {head.number}, anchor ")
        assert "announced 0x" in announced
        (raw,) = w3.pole.announcements(task.task_id, bytes(head.hash))
        release_for(w3, digits, task, head.hash, [SolutionAnnouncement.decode(raw).model_commitment])
        assert "sealed block" in wait_line("sealed block")
        # On the new head the next best task is worked on.
        next_line = wait_line(f"task {later.task_id} @ block {head.number + 1}, anchor ")
        assert "announced 0x" in next_line, next_line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=WAIT_S) == 0
        assert "stopped" in wait_line("stopped")
        assert not any("Traceback" in line for line in seen), "".join(seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert w3.pole.get_task(task.task_id).status is TaskStatus.SETTLED


def test_real_miner_process_seals_again_when_its_block_leaves_the_chain(w3, devnode, digits):
    """`pole mine` as a process: its block leaves the chain (the dev node rewinds past it and
    mines an idle block in its place) while the task stays best; the process seals the same
    model on the new head and the task settles there."""
    ensure_bonded(w3, MINER)  # bonded before the task's block: `pole mine` sends nothing on start
    task = post_task(w3, digits)
    anchor = latest(w3)
    process, stderr = start_miner_process(devnode, MINER)
    try:
        assert "announced 0x" in stderr.wait_line(f"task {task.task_id} @ block {anchor.number}, anchor ")
        (raw,) = w3.pole.announcements(task.task_id, bytes(anchor.hash))
        commitment = SolutionAnnouncement.decode(raw).model_commitment
        before_seal = dev(w3, "evm_snapshot")
        release_for(w3, digits, task, anchor.hash, [commitment])
        stderr.wait_line(f"sealed block {anchor.number + 1}")
        first = latest(w3)
        assert bytes(first.mixHash) == commitment

        assert dev(w3, "evm_revert", before_seal) is True
        dev(w3, "evm_mine")
        idle = latest(w3)
        assert bytes(idle.hash) != bytes(first.hash)
        stderr.wait_line(f"is not in the chain at block {idle.number}; sealing the same model again")
        assert f"sealed block {idle.number + 1}" in stderr.wait_line(f"sealed block {idle.number + 1}")
        block = latest(w3)
        assert block.parentHash == idle.hash and bytes(block.mixHash) == commitment
        settled = w3.pole.get_task(task.task_id)
        assert settled.status is TaskStatus.SETTLED and settled.result.block_number == idle.number + 1
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=WAIT_S) == 0
        assert not any("Traceback" in line for line in stderr.seen), "".join(stderr.seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
