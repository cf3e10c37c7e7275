"""The miner process, one height at a time.

First against `FakeNode`, an in-memory stand-in for PoLeClient (every branch of a height:
seal, refusal, abandonment, node errors), then end to end against a real `pole node --dev`
process where the test plays the data node.
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import pytest
from eth_utils import keccak
from web3 import Web3

from contracts import TASK_REGISTRY, load_artifact
from miner import mine_cli, mining
from miner.datasets import encode_dataset, load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model
from miner.integer_model import decode_model
from miner.messages import Release, SolutionAnnouncement, commitment_for
from miner.mining import HeightResult, Miner, MinerConfig, Outcome
from miner.model_spec import build_spec, model_spec_canonical_bytes, model_spec_digest
from miner.sml import sml_for
from miner.training import Hyperparams
from pole_chain.client import NodeError, PoLeClient, TaskInfo
from pole_chain.constants import CHAIN_ID, REGISTRY_ADDRESS
from pole_chain.cli import build_parser
from pole_chain.genesis import dev_accounts
from pole_chain.node_process import NodeProcess, child_environment

ACCOUNTS = dev_accounts()
POSTER, MINER, OTHER = ACCOUNTS[1], ACCOUNTS[2], ACCOUNTS[3]
MINER_ADDRESS = bytes.fromhex(MINER.address[2:])
TARGET_BPS = 9000
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def digits():
    train, test = split_dataset(load_builtin("digits"), 0.2, seed=1, test_salt=bytes(range(32)))
    spec = build_spec("mlp", train.d, train.num_classes)
    return SimpleNamespace(
        train=train,
        test=test,
        spec=spec,
        train_blob=encode_dataset(train),
        test_blob=encode_dataset(test),
        spec_blob=model_spec_canonical_bytes(spec),
    )


# --------------------------------------------------------------------------------------
# A fake node: PoLeClient's methods over in-memory state
# --------------------------------------------------------------------------------------


class FakeNode:
    """What the miner sees of a node: head, best task, blobs, messages, seals.

    `admit` plays the data node: called with each announcement, it returns the commitments
    to admit (None: no release yet). Hooks let a test move the head or fail a call.
    """

    def __init__(self, digits, *, admit: Optional[Callable] = None) -> None:
        self.digits = digits
        self.chain_id = CHAIN_ID
        self.w3 = SimpleNamespace(eth=self)
        self.heads = [(17, keccak(b"head 17"), NOW)]
        self.blobs = {keccak(b): b for b in (digits.train_blob, digits.spec_blob, digits.test_blob)}
        self.task: Optional[TaskInfo] = make_task(digits)
        self.admit = admit if admit is not None else (lambda ann: [ann.model_commitment])
        self.announcements: list[SolutionAnnouncement] = []
        self.releases: dict[tuple[int, bytes], bytes] = {}
        self.models: dict[bytes, bytes] = {}
        self.sealed: list[dict] = []
        self.refuse: Optional[str] = None
        self.blob_requests: list[bytes] = []
        self.on_get_block: Callable[[int], None] = lambda calls: None
        self.get_block_calls = 0
        self.fail_next: dict[str, BaseException] = {}

    # head
    @property
    def head(self):
        return self.heads[-1]

    def new_head(self) -> None:
        number, _, timestamp = self.head
        self.heads.append((number + 1, keccak(b"head %d" % (number + 1)), timestamp + 1))

    def get_block(self, ident):
        assert ident == "latest"
        self.get_block_calls += 1
        self.on_get_block(self.get_block_calls)
        number, block_hash, timestamp = self.head
        return {"number": number, "hash": block_hash, "timestamp": timestamp}

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail_next:
            raise self.fail_next.pop(name)

    # PoLeClient
    def best_task(self):
        self._maybe_fail("best_task")
        return self.task

    def get_blob(self, digest: bytes) -> bytes:
        self.blob_requests.append(digest)
        if digest not in self.blobs:
            raise NodeError("pole_getBlob", {"code": -32004, "message": "blob not found"})
        return self.blobs[digest]

    def announce(self, raw: bytes) -> bool:
        self._maybe_fail("announce")
        announcement = SolutionAnnouncement.decode(raw).verify(CHAIN_ID)
        self.announcements.append(announcement)
        admitted = self.admit(announcement)
        if admitted is not None:
            release = Release.sign(
                chain_id=CHAIN_ID,
                task_id=announcement.task_id,
                parent_hash=announcement.parent_hash,
                test_set_digest=keccak(self.digits.test_blob),
                admitted=admitted,
                private_key=POSTER.key,
            )
            self.releases[(release.task_id, release.parent_hash)] = release.encode()
        return True

    def get_release(self, task_id: int, parent_hash: bytes):
        self._maybe_fail("get_release")
        return self.releases.get((task_id, parent_hash))

    def reveal_model(self, blob: bytes, coinbase: bytes, parent_hash: bytes) -> bytes:
        commitment = commitment_for(blob, coinbase, parent_hash)
        self.models[commitment] = blob
        return commitment

    def seal_block(self, **request) -> bytes:
        self._maybe_fail("seal_block")
        if self.refuse:
            raise NodeError("pole_sealBlock", {"code": -32010, "message": self.refuse})
        self.sealed.append(request)
        return keccak(b"block %d" % len(self.sealed))


def make_task(digits, **changes) -> TaskInfo:
    fields = dict(
        task_id=3,
        poster=bytes.fromhex(POSTER.address[2:]),
        reward=10**18,
        model_spec=model_spec_digest(digits.spec),
        dataset_digest=keccak(digits.train_blob),
        test_set_commitment=keccak(digits.test_blob),
        min_train_bps=TARGET_BPS,
        time_limit=600,
        solutions_wanted=1,
        posted_at=NOW - 10,
        deadline=NOW + 590,
        status="open",
        result=None,
    )
    fields.update(changes)
    return TaskInfo(**fields)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_miner(node: FakeNode, clock: Optional[Clock] = None, **config) -> Miner:
    config.setdefault("poll_s", 0.01)
    config.setdefault("progress", False)
    return Miner(node, MINER, MinerConfig(**config), clock=clock or Clock())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# One height against the fake node
# --------------------------------------------------------------------------------------


def test_height_from_task_to_sealed_block(digits, caplog):
    node = FakeNode(digits)
    miner = make_miner(node)
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        result = miner.step()
    assert result.outcome is Outcome.SEALED, result
    _, head_hash, _ = node.head

    # The announcement: signed by the miner for this task and parent, the train claim.
    (announcement,) = node.announcements
    assert announcement.miner == MINER_ADDRESS and announcement.parent_hash == head_hash
    assert announcement.task_id == 3 and announcement.train_bps >= TARGET_BPS

    # The reveal and the seal say what consensus will recompute from the blob.
    (seal,) = node.sealed
    blob = node.models[seal["commitment"]]
    assert seal["commitment"] == commitment_for(blob, MINER_ADDRESS, head_hash)
    assert seal["commitment"] == announcement.model_commitment
    model = decode_model(blob)
    sml = sml_for(head_hash, MINER_ADDRESS, digits.train.d)
    assert seal["train_bps"] == evaluate_integer_model(model, sml, digits.train) == announcement.train_bps
    assert seal["test_bps"] == evaluate_integer_model(model, sml, digits.test) > 8000
    release = Release.decode(node.releases[(3, head_hash)])
    assert seal["release_digest"] == release.digest
    assert seal["parent_hash"] == head_hash and seal["coinbase"] == MINER_ADDRESS
    assert seal["task_id"] == 3
    assert result.block_hash == keccak(b"block 1") and result.finished_attempt

    # Two log lines for the height: the announcement and the seal.
    lines = [r.getMessage() for r in caplog.records if r.name == "pole.miner"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("task 3 @ block 17 (0x") and "announced 0x" in lines[0]
    assert "bps train in" in lines[0]
    assert f"test {seal['test_bps']} bps; sealed block 18 (0x" in lines[1]

    # The same head is not worked on twice; a new head is a new height (blobs cached).
    assert miner.step().outcome is Outcome.SEEN
    requests = len(node.blob_requests)
    node.new_head()
    assert miner.step().outcome is Outcome.SEALED
    assert len(node.sealed) == 2
    assert len(node.blob_requests) == requests + 1  # the test set; task blobs come from the cache


def test_no_task_overdue_and_settled_are_skipped_quietly(digits, caplog):
    node = FakeNode(digits)
    node.task = None
    miner = make_miner(node)
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        assert miner.step().outcome is Outcome.NO_TASK
        assert miner.step().outcome is Outcome.NO_TASK  # logged once per head
        node.task = make_task(digits, deadline=NOW)  # deadline == head time: overdue
        assert miner.step().outcome is Outcome.OVERDUE
        node.task = make_task(digits, status="settled")
        assert miner.step().outcome is Outcome.NO_TASK
    assert node.blob_requests == [] and node.announcements == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("no open task" in m for m in messages) == 1
    assert any("overdue" in m or "not after the head's time" in m for m in messages)


def test_head_change_during_training_abandons_before_announcing(digits, monkeypatch):
    node = FakeNode(digits)
    real_train = mining.train_model

    def train_then_new_block(*args, **kwargs):
        result = real_train(*args, **kwargs)
        node.new_head()  # someone else's block arrived meanwhile
        return result

    monkeypatch.setattr(mining, "train_model", train_then_new_block)
    result = make_miner(node).step()
    assert result.outcome is Outcome.HEAD_CHANGED and not result.announced
    assert "during training" in result.reason
    assert node.announcements == [] and node.sealed == []


def test_training_hook_notices_a_new_head(digits, monkeypatch):
    """train_model's `should_stop` hook asks the node: a new head stops training early."""
    node = FakeNode(digits)
    answers = []
    real_train = mining.train_model

    def train_with_hook(*args, should_stop, **kwargs):
        answers.append(should_stop())  # head unchanged
        node.new_head()
        time.sleep(0.02)  # past the poll interval: the hook asks the node again
        answers.append(should_stop())
        return real_train(*args, **kwargs)

    monkeypatch.setattr(mining, "train_model", train_with_hook)
    result = make_miner(node).step()
    assert answers == [False, True]
    assert result.outcome is Outcome.HEAD_CHANGED and node.announcements == []


def test_release_that_does_not_admit_us_is_abandoned(digits, caplog):
    node = FakeNode(digits, admit=lambda ann: [keccak(b"someone else")])
    miner = make_miner(node)
    with caplog.at_level(logging.INFO, logger="pole.miner"):
        result = miner.step()
    assert result.outcome is Outcome.NOT_ADMITTED and result.announced
    assert "not ours" in result.reason
    assert node.models == {} and node.sealed == []  # weights stay private
    assert any("abandoned: release 0x" in r.getMessage() for r in caplog.records)
    assert miner.step().outcome is Outcome.SEEN  # no retraining on this head


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda node: setattr(node, "task", make_task(node.digits, poster=b"\x01" * 20)), "task poster"),
        (lambda node: setattr(node, "task", make_task(node.digits, test_set_commitment=b"\x02" * 32)),
         "committed to"),
    ],
)
def test_release_not_matching_the_task_is_refused(digits, tamper, reason):
    node = FakeNode(digits)
    tamper(node)
    result = make_miner(node).step()
    assert result.outcome is Outcome.BAD_RELEASE and reason in result.reason
    assert node.sealed == []


def test_forged_release_signature_is_refused(digits):
    node = FakeNode(digits, admit=lambda ann: None)
    miner = make_miner(node)
    node.on_get_block = lambda calls: forge_release(node) if node.announcements else None
    result = miner.step()
    assert result.outcome is Outcome.BAD_RELEASE and "release rejected" in result.reason


def forge_release(node: FakeNode) -> None:
    """A release signed by someone else that claims the poster's address."""
    _, head_hash, _ = node.head
    genuine = Release.sign(
        chain_id=CHAIN_ID, task_id=3, parent_hash=head_hash,
        test_set_digest=keccak(node.digits.test_blob),
        admitted=[node.announcements[0].model_commitment], private_key=OTHER.key,
    )
    forged = Release(**{**genuine.as_dict(), "poster": bytes.fromhex(POSTER.address[2:])})
    node.releases[(3, head_hash)] = forged.encode()


def test_no_release_by_the_deadline_gives_up(digits):
    node = FakeNode(digits, admit=lambda ann: None)  # the poster never answers
    clock = Clock()
    node.on_get_block = lambda calls: setattr(clock, "now", clock.now + 60)
    result = make_miner(node, clock).step()
    assert result.outcome is Outcome.DEADLINE_PASSED and result.announced
    assert clock.now > node.task.deadline + mining.RELEASE_GRACE_S


def test_head_change_while_waiting_for_the_release_abandons(digits):
    node = FakeNode(digits, admit=lambda ann: None)
    node.on_get_block = lambda calls: node.new_head() if node.announcements and len(node.heads) == 1 else None
    result = make_miner(node).step()
    assert result.outcome is Outcome.HEAD_CHANGED and result.announced
    assert "head moved to block 18" in result.reason


def test_test_set_uploaded_after_the_release_is_waited_for(digits):
    node = FakeNode(digits)
    test_digest = keccak(digits.test_blob)
    node.blobs.pop(test_digest)
    node.on_get_block = lambda calls: (
        node.blobs.setdefault(test_digest, digits.test_blob) if calls > 8 else None
    )
    assert make_miner(node).step().outcome is Outcome.SEALED


def test_refused_seal_is_reported_with_the_node_reason(digits):
    node = FakeNode(digits)
    node.refuse = "claimed test accuracy 9312 bps, evaluated 9270 bps"
    result = make_miner(node).step()
    assert result.outcome is Outcome.REFUSED and "evaluated 9270 bps" in result.reason
    assert result.finished_attempt


def test_node_errors_are_retried_without_retraining(digits, monkeypatch):
    node = FakeNode(digits)
    node.fail_next["best_task"] = ConnectionError("connection refused")
    node.fail_next["announce"] = NodeError("pole_announce", {"code": -32000, "message": "busy"})
    node.fail_next["seal_block"] = TimeoutError("read timed out")
    trainings = []
    real_train = mining.train_model
    monkeypatch.setattr(mining, "train_model", lambda *a, **k: trainings.append(1) or real_train(*a, **k))
    result = make_miner(node).run(once=True)
    assert result is not None and result.outcome is Outcome.SEALED
    assert len(trainings) == 1 and len(node.sealed) == 1
    assert len(node.announcements) == 1


def test_unusable_task_data_is_skipped_and_remembered(digits):
    node = FakeNode(digits)
    loose = digits.spec_blob + b" "  # the right spec, but not its canonical JSON
    node.blobs[keccak(loose)] = loose
    node.task = make_task(digits, model_spec=keccak(loose))
    miner = make_miner(node)
    result = miner.step()
    assert result.outcome is Outcome.BAD_TASK and "malformed" in result.reason
    node.new_head()
    requests = len(node.blob_requests)
    assert miner.step().outcome is Outcome.BAD_TASK
    assert len(node.blob_requests) == requests  # not fetched again


def test_missing_training_set_is_waited_for(digits):
    node = FakeNode(digits)
    train_blob = node.blobs.pop(keccak(digits.train_blob))
    miner = make_miner(node)
    assert miner.step().outcome is Outcome.DATA_MISSING
    node.blobs[keccak(train_blob)] = train_blob
    assert miner.step().outcome is Outcome.SEALED


def test_spec_for_another_dataset_is_a_bad_task(digits):
    node = FakeNode(digits)
    wrong = build_spec("mlp", 30, 10)
    blob = model_spec_canonical_bytes(wrong)
    node.blobs[keccak(blob)] = blob
    node.task = make_task(digits, model_spec=keccak(blob))
    result = make_miner(node).step()
    assert result.outcome is Outcome.BAD_TASK and "model input has 60 values" in result.reason


def test_unreachable_target_is_skipped_for_the_height(digits):
    node = FakeNode(digits)
    node.task = make_task(digits, min_train_bps=10000)
    miner = make_miner(node, hyperparams=Hyperparams(max_epochs=2))
    result = miner.step()
    assert result.outcome is Outcome.TARGET_MISSED and "target 10000" in result.reason
    assert node.announcements == []
    assert miner.step().outcome is Outcome.SEEN


def test_training_gets_a_share_of_the_time_left(digits, monkeypatch):
    node = FakeNode(digits)
    seen = {}
    real_train = mining.train_model

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(mining, "train_model", spy)
    make_miner(node, Clock(NOW + 90), train_fraction=0.25, seed=7).step()
    assert seen["time_limit_s"] == pytest.approx((590 - 90) * 0.25)
    assert seen["target_train_bps"] == TARGET_BPS and seen["seed"] == 7


def test_stop_ends_run_while_waiting(digits):
    node = FakeNode(digits, admit=lambda ann: None)
    miner = make_miner(node)
    results: list[Optional[HeightResult]] = []
    thread = threading.Thread(target=lambda: results.append(miner.run()))
    thread.start()
    deadline = time.monotonic() + 20
    while not node.announcements and time.monotonic() < deadline:
        time.sleep(0.01)
    miner.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert results[0] is not None and results[0].outcome is Outcome.STOPPED


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


# --------------------------------------------------------------------------------------
# End to end: a real `pole node --dev` process; the test plays the data node
# --------------------------------------------------------------------------------------

ETHER = 10**18
WAIT_S = 30.0


@pytest.fixture(scope="module")
def devnode(tmp_path_factory):
    process = NodeProcess(tmp_path_factory.mktemp("mining-node")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(devnode):
    return PoLeClient(devnode.web3())


def post_task(client, digits, *, time_limit: int = 600) -> TaskInfo:
    """The data node's side of posting: public blobs first, then the escrow transaction.

    Each task pays more than any earlier one, so it is the best open task.
    """
    w3 = client.w3
    assert client.put_blob(digits.train_blob) == keccak(digits.train_blob)
    assert client.put_blob(digits.spec_blob) == model_spec_digest(digits.spec)
    registry = w3.eth.contract(
        address=Web3.to_checksum_address(REGISTRY_ADDRESS), abi=load_artifact(TASK_REGISTRY).abi
    )
    reward = (registry.functions.task_count().call() + 1) * ETHER
    tx_hash = registry.functions.post_task(
        model_spec_digest(digits.spec),
        keccak(digits.train_blob),
        keccak(digits.test_blob),
        TARGET_BPS,
        time_limit,
        1,
    ).transact({"from": POSTER.address, "value": reward})
    assert w3.eth.get_transaction_receipt(tx_hash).status == 1  # automine: already mined
    task = client.best_task()
    assert task is not None and task.reward == reward
    return task


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def release_for(client, digits, task: TaskInfo, parent: bytes, admitted: list[bytes]) -> Release:
    """The data node's release: the test set blob, then the signed admitted list."""
    assert client.put_blob(digits.test_blob) == task.test_set_commitment
    release = Release.sign(
        chain_id=CHAIN_ID,
        task_id=task.task_id,
        parent_hash=parent,
        test_set_digest=task.test_set_commitment,
        admitted=admitted,
        private_key=POSTER.key,
    )
    assert client.release(release.encode())
    return release


def step_in_thread(miner: Miner) -> tuple[threading.Thread, list[HeightResult]]:
    results: list[HeightResult] = []
    thread = threading.Thread(target=lambda: results.append(miner.step()), daemon=True)
    thread.start()
    return thread, results


def test_real_node_release_that_does_not_admit_us(client, digits):
    task = post_task(client, digits)
    head = client.w3.eth.get_block("latest")
    miner = Miner(client, MINER, MinerConfig(poll_s=0.05, progress=False))
    thread, results = step_in_thread(miner)

    (raw,) = wait_for(lambda: client.announcements(task.task_id, bytes(head.hash)), "the announcement")
    announcement = SolutionAnnouncement.decode(raw).verify(CHAIN_ID)
    assert announcement.miner == MINER_ADDRESS
    release_for(client, digits, task, bytes(head.hash), [keccak(b"another miner's model")])
    thread.join(WAIT_S)
    assert not thread.is_alive()
    (result,) = results
    assert result.outcome is Outcome.NOT_ADMITTED and result.announced
    # Nothing revealed, nothing sealed, the task still open.
    assert client.get_model(announcement.model_commitment) is None
    assert client.w3.eth.get_block("latest").hash == head.hash
    assert client.task(task.task_id).status == "open"


def test_real_node_miner_seals_and_is_paid(client, digits):
    w3 = client.w3
    task = post_task(client, digits)
    head = w3.eth.get_block("latest")
    balance_before = w3.eth.get_balance(MINER.address)
    miner = Miner(client, MINER, MinerConfig(poll_s=0.05, progress=False))
    thread, results = step_in_thread(miner)

    (raw,) = wait_for(lambda: client.announcements(task.task_id, bytes(head.hash)), "the announcement")
    announcement = SolutionAnnouncement.decode(raw).verify(CHAIN_ID)
    release = release_for(client, digits, task, bytes(head.hash), [announcement.model_commitment])
    thread.join(WAIT_S)
    assert not thread.is_alive()
    (result,) = results
    assert result.outcome is Outcome.SEALED, result

    block = w3.eth.get_block("latest")
    assert bytes(block.hash) == result.block_hash and block.number == head.number + 1
    assert block.miner == MINER.address and block.parentHash == head.hash
    assert block.difficulty == result.test_bps
    settled = client.task(task.task_id)
    assert settled.status == "settled"
    assert settled.result is not None and settled.result.winner == MINER_ADDRESS
    assert settled.result.model_commitment == announcement.model_commitment
    assert (settled.result.train_bps, settled.result.test_bps) == (result.train_bps, result.test_bps)
    assert settled.result.release_digest_prefix == release.digest[:24]
    assert w3.eth.get_balance(MINER.address) == balance_before + task.reward
    assert client.get_model(announcement.model_commitment) is not None


def test_real_node_cli_once_exits_zero_after_sealing(client, devnode, digits):
    task = post_task(client, digits)
    head = client.w3.eth.get_block("latest")
    args = parse("--rpc", devnode.url, "--key", "0x" + bytes(OTHER.key).hex(), "--once",
                 "--poll", "0.05", "--no-progress", "--seed", "3")
    statuses: list[int] = []
    thread = threading.Thread(target=lambda: statuses.append(mine_cli.run(args)), daemon=True)
    thread.start()
    (raw,) = wait_for(lambda: client.announcements(task.task_id, bytes(head.hash)), "the announcement")
    commitment = SolutionAnnouncement.decode(raw).model_commitment
    release_for(client, digits, task, bytes(head.hash), [commitment])
    thread.join(WAIT_S)
    assert statuses == [0]
    settled = client.task(task.task_id)
    assert settled.status == "settled" and settled.result.winner == bytes.fromhex(OTHER.address[2:])


def test_real_miner_process_keeps_mining_and_stops_cleanly_on_ctrl_c(client, devnode, digits):
    """`pole mine` as a process: seals, moves on to the next height, exits 0 on SIGINT."""
    later = post_task(client, digits)  # still open after `task` settles: the next height's
    task = post_task(client, digits)
    head = client.w3.eth.get_block("latest")
    env = dict(child_environment(), **{mine_cli.MINER_KEY_VARIABLE: "0x" + bytes(MINER.key).hex()})
    process = subprocess.Popen(
        [sys.executable, "-m", "pole_chain", "mine", "--rpc", devnode.url, "--poll", "0.05",
         "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def wait_line(fragment: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"no {fragment!r} line; miner said:\n{''.join(seen)}")

    try:
        announced = wait_line(f"task {task.task_id} @ block {head.number} (")
        assert "announced 0x" in announced
        (raw,) = client.announcements(task.task_id, bytes(head.hash))
        release_for(client, digits, task, bytes(head.hash), [SolutionAnnouncement.decode(raw).model_commitment])
        assert "sealed block" in wait_line("sealed block")
        # On the new head the next best task is worked on.
        next_line = wait_line(f"task {later.task_id} @ block {head.number + 1} (")
        assert "announced 0x" in next_line, next_line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=WAIT_S) == 0
        assert "stopped" in wait_line("stopped")
        assert not any("Traceback" in line for line in seen), "".join(seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert client.task(task.task_id).status == "settled"
