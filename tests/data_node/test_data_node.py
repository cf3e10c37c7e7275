"""Data-node helpers: preparing, posting, releasing and summarising a task.

Everything runs against a real `pole node --dev` process (one per module, over HTTP through
web3 and its `w3.pole` module): the registry, blobs, announcements and releases are the
node's own. Miners' announcements are really signed and sent with pole_announce; new heads
are dev blocks (evm_mine). Each test runs on an evm_snapshot of the node and reverts it
afterwards, so every test posts task 1 on the same fresh chain (the node accepts
announcements and releases only at the block that anchors their task, docs/PROTOCOL.md
"Task anchor": here the block that posted it).
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from eth_utils import encode_hex, keccak, to_canonical_address
from web3 import Web3
from web3.exceptions import Web3RPCError

from miner.datasets import ZERO_SALT, decode_dataset, encode_dataset, load_builtin
from miner.bonds import ensure_bonded
from miner.messages import MAX_ADMITTED, Release, SolutionAnnouncement
from miner.model_spec import build_spec, model_spec_canonical_bytes
from miner.pole_module import attach_pole, error_code, error_message
from pole_chain.cli import task_cli
from pole_chain.cli.main import build_parser
from pole_chain.clients import data_node
from tests.conftest import dev_call
from vm_hooks.params import CHAIN_ID
from pole_chain.clients.data_node import (
    DataNodeError,
    load_local_task,
    load_model_spec,
    post_task,
    prepare_task,
    registry_contract,
    release,
    status,
    valid_announcements,
)
from vm_hooks.genesis import dev_accounts
from vm_hooks.task import TaskStatus

ACCOUNTS = dev_accounts()
POSTER = ACCOUNTS[0]
ETHER = 10**18
UNKNOWN = -32001  # pole_chain/rpc/dispatch.py: RESOURCE_NOT_FOUND
DIGITS_MLP_SPEC_DIGEST_PREFIX = "f56b37e7"  # docs/ML.md


def announce(w3: Web3, miner_index: int, task_id: int, parent: bytes,
             train_bps: int = 9500, commitment: bytes | None = None) -> SolutionAnnouncement:
    """A miner's signed SolutionAnnouncement, sent to the node (pole_announce)."""
    announcement = SolutionAnnouncement.sign(
        chain_id=CHAIN_ID, task_id=task_id, anchor_hash=parent,
        model_commitment=commitment or keccak(bytes([miner_index]) + parent),
        train_bps=train_bps, private_key=ACCOUNTS[miner_index].key,
    )
    assert w3.pole.announce(announcement.encode()) is True
    return announcement


#: Dev accounts that announce in these tests: bonded, since data nodes admit bonded miners only.
BONDED_MINERS = ACCOUNTS[1:5]


@pytest.fixture
def w3(snapshot_w3):
    """The data node's Web3, with `w3.pole` (tests/conftest.py: reverted after the test);
    the announcing miners hold their bonds (tests/cli/test_bonds.py covers unbonded ones)."""
    for account in BONDED_MINERS:
        ensure_bonded(snapshot_w3, account)
    return snapshot_w3


def head_hash(w3) -> bytes:
    return bytes(w3.eth.get_block("latest")["hash"])


def post(w3, workdir, **overrides) -> int:
    params = dict(
        dataset="digits", model="mlp", reward_wei=ETHER, min_train_bps=9000,
        time_limit_s=300, solutions_wanted=2, seed=5, workdir=workdir,
    )
    params.update(overrides)
    return post_task(w3, POSTER, **params)


# --- preparing ------------------------------------------------------------------------


def test_prepare_task_splits_encodes_and_salts_only_the_test_set():
    prepared = prepare_task("digits", "mlp", test_fraction=0.25, seed=1)
    assert prepared.train.n + prepared.test.n == 1797
    assert prepared.test.n == round(1797 * 0.25)
    assert prepared.train.salt == ZERO_SALT and prepared.test.salt != ZERO_SALT
    assert prepared.model_spec_digest.hex().startswith(DIGITS_MLP_SPEC_DIGEST_PREFIX)
    assert prepared.dataset_digest == keccak(encode_dataset(prepared.train))
    assert prepared.test_set_commitment == keccak(prepared.test_blob)
    # Same seed, same split; the salt is fresh every time, so the commitment is too.
    again = prepare_task("digits", "mlp", test_fraction=0.25, seed=1)
    assert again.dataset_digest == prepared.dataset_digest
    assert again.test_set_commitment != prepared.test_set_commitment


def test_datasets_and_models_from_files(tmp_path):
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(0, 50, 6)) + [i % 3] for i in range(90)]
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,c,d,e,f,label\n" + "\n".join(",".join(map(str, r)) for r in rows))
    spec = build_spec("logreg", 6, 3)
    spec_file = tmp_path / "spec.json"
    spec_file.write_bytes(model_spec_canonical_bytes(spec))
    prepared = prepare_task(str(csv), str(spec_file))
    assert prepared.train.d == 6 and prepared.spec == spec
    npz = tmp_path / "images.npz"
    np.savez(npz, X=rng.integers(0, 256, (40, 4, 4)), y=np.arange(40) % 2)
    assert prepare_task(str(npz), "cnn").spec.input_shape == (8, 4, 4)


def test_clear_errors_for_bad_inputs(tmp_path):
    with pytest.raises(DataNodeError, match="neither a built-in dataset"):
        prepare_task("no-such-set", "mlp")
    with pytest.raises(DataNodeError, match="no such file"):
        prepare_task(str(tmp_path / "missing.csv"), "mlp")
    with pytest.raises(DataNodeError, match="neither a predefined model"):
        prepare_task("digits", "transformer")
    wrong = tmp_path / "wrong.json"
    wrong.write_bytes(model_spec_canonical_bytes(build_spec("mlp", 13, 3)))
    with pytest.raises(DataNodeError, match="the SML of 64 features gives 128"):
        load_model_spec(str(wrong), load_builtin("digits"))
    one_map = tmp_path / "one_map.json"  # an image input with E = 1: no local SML has it
    one_map.write_bytes(model_spec_canonical_bytes(build_spec("cnn", 64, 10, (1, 8, 8), expansion=1)))
    with pytest.raises(DataNodeError, match="E in 2..8"):
        load_model_spec(str(one_map), load_builtin("digits"))
    with pytest.raises(DataNodeError, match="image dataset"):
        prepare_task("wine", "cnn")
    for bad in (
        dict(reward_wei=0), dict(min_train_bps=10_001), dict(time_limit_s=0),
        dict(solutions_wanted=0), dict(solutions_wanted=MAX_ADMITTED + 1),
    ):
        params = {**dict(reward_wei=1, min_train_bps=1, time_limit_s=1, solutions_wanted=1), **bad}
        with pytest.raises(DataNodeError):
            data_node.check_task_parameters(**params)


# --- posting --------------------------------------------------------------------------


def test_post_task_escrows_the_reward_and_keeps_the_test_set_secret(w3, tmp_path):
    registry = registry_contract(w3)
    before = w3.eth.get_balance(registry.address)
    task_id = post(w3, tmp_path)
    assert task_id == 1
    assert w3.eth.get_balance(registry.address) == before + ETHER

    task = w3.pole.get_task(task_id)
    local = load_local_task(tmp_path, task_id)
    assert task.status is TaskStatus.OPEN and task.poster == to_canonical_address(POSTER.address)
    assert task.test_set_commitment == local.test_set_commitment
    assert (task.min_train_bps, task.time_limit, task.solutions_wanted) == (9000, 300, 2)
    # Public: training set and spec. Secret: the test set (on disk only).
    assert decode_dataset(w3.pole.get_blob(task.dataset_digest)).n == local.record["train_samples"]
    assert keccak(w3.pole.get_blob(task.model_spec)) == task.model_spec
    with pytest.raises(Web3RPCError) as unknown:
        w3.pole.get_blob(task.test_set_commitment)
    assert error_code(unknown.value) == UNKNOWN
    assert local.test_set().n == local.record["test_samples"] == 359
    assert local.record["task_id"] == 1 and local.record["transaction"].startswith("0x")
    assert not list((tmp_path / "tasks").glob("posting-*"))
    # The spec beside it: what an encrypted task's keys are derived for.
    assert keccak(model_spec_canonical_bytes(local.spec())) == task.model_spec
    (local.directory / "spec.json").write_text("{")
    with pytest.raises(DataNodeError, match="cannot read the task's model spec"):
        local.spec()

    assert post(w3, tmp_path, solutions_wanted=1) == 2


def test_post_task_reports_a_refusal_before_spending_gas(w3, tmp_path, monkeypatch):
    monkeypatch.setattr(data_node, "MAX_SOLUTIONS_WANTED", 10**6)  # let the call reach the chain
    monkeypatch.setattr(data_node, "check_task_parameters", lambda **_: None)
    with pytest.raises(DataNodeError, match="refuses the task: .*time limit too long"):
        post(w3, tmp_path, time_limit_s=400 * 86400)


def test_a_reused_task_id_keeps_the_old_files(w3, tmp_path):
    old = tmp_path / "tasks" / "1"
    old.mkdir(parents=True)
    (old / "note").write_text("from a chain that was reset")
    assert post(w3, tmp_path) == 1
    assert load_local_task(tmp_path, 1).record["task_id"] == 1
    (aside,) = (tmp_path / "tasks").glob("1.replaced-*")
    assert (aside / "note").exists()


# --- release --------------------------------------------------------------------------


def test_release_admits_the_valid_announcements_for_the_anchor(w3, tmp_path):
    task_id = post(w3, tmp_path, solutions_wanted=3)
    parent = head_hash(w3)  # the task's anchor: it became best after this block
    assert w3.pole.best_task().anchor.hash == parent
    good = [announce(w3, 1, task_id, parent, 9400), announce(w3, 2, task_id, parent, 9700)]
    announce(w3, 3, task_id, parent, 8000)  # below the task's minimum: the node keeps it, useless
    # Another anchor: the node refuses one it does not know...
    with pytest.raises(Web3RPCError) as unknown_parent:
        announce(w3, 4, task_id, keccak(b"elsewhere"))
    assert error_code(unknown_parent.value) == UNKNOWN
    # ...and blocks that do not anchor the task: before it was posted, and after it.
    before_post = bytes(w3.eth.get_block("latest")["parentHash"])
    with pytest.raises(Web3RPCError) as not_open:
        announce(w3, 4, task_id, before_post)
    assert "is not the anchor of task" in error_message(not_open.value)
    dev_call(w3, "evm_mine")
    with pytest.raises(Web3RPCError) as not_anchor:
        announce(w3, 4, task_id, head_hash(w3))
    assert "is not the anchor of task" in error_message(not_anchor.value)
    forged = SolutionAnnouncement.sign(
        chain_id=CHAIN_ID, task_id=task_id, anchor_hash=parent, model_commitment=keccak(b"x"),
        train_bps=9900, private_key=ACCOUNTS[5].key,
    ).copy(miner=to_canonical_address(ACCOUNTS[6].address))
    with pytest.raises(Web3RPCError):  # the node checks the signature
        w3.pole.announce(forged.encode())
    assert len(w3.pole.announcements(task_id, parent)) == 3
    early = Release.sign(  # the node will not take a release whose test set it lacks
        chain_id=CHAIN_ID, task_id=task_id, anchor_hash=parent,
        test_set_digest=w3.pole.get_task(task_id).test_set_commitment,
        admitted=[a.model_commitment for a in good], private_key=POSTER.key,
    )
    with pytest.raises(Web3RPCError) as early_release:
        w3.pole.release(early.encode())
    assert "must be uploaded before the release" in error_message(early_release.value)
    assert w3.pole.get_release(task_id, parent) is None
    test_blob = load_local_task(tmp_path, task_id).test_blob
    assert w3.pole.put_blob(test_blob) == early.test_set_digest
    with pytest.raises(Web3RPCError) as withheld:  # uploaded, not yet public
        w3.pole.get_blob(early.test_set_digest)
    assert "withheld until its release" in error_message(withheld.value)

    outcome = release(w3, POSTER, task_id, tmp_path)
    assert outcome.anchor_hash == parent and not outcome.already_released
    assert {a.miner for a in outcome.admitted} == {a.miner for a in good}
    message = Release.decode(w3.pole.get_release(task_id, parent)).verify(CHAIN_ID)
    assert message.poster == to_canonical_address(POSTER.address)
    assert set(message.admitted) == {a.model_commitment for a in good}
    assert message.test_set_digest == w3.pole.get_task(task_id).test_set_commitment
    assert w3.pole.get_blob(message.test_set_digest) == load_local_task(tmp_path, task_id).test_blob
    record = json.loads((tmp_path / "tasks" / str(task_id) / "release.json").read_text())
    assert record["release_digest"] == encode_hex(message.digest)
    # Asking again finds the release on the node and changes nothing.
    again = release(w3, POSTER, task_id, tmp_path)
    assert again.already_released and again.digest == message.digest


def test_auto_release_waits_for_the_wanted_solutions_at_the_anchor_while_blocks_come(
    w3, devnode, tmp_path
):
    task_id = post(w3, tmp_path, solutions_wanted=2)
    anchor = head_hash(w3)
    announce(w3, 1, task_id, anchor)
    miners = attach_pole(devnode.web3())  # the miners' own connection

    def later() -> None:  # the head moves (a dev block), then a second miner announces
        time.sleep(0.3)
        dev_call(miners, "evm_mine")
        time.sleep(0.3)
        announce(miners, 2, task_id, anchor)

    thread = threading.Thread(target=later)
    thread.start()
    messages: list[str] = []
    outcome = release(
        w3, POSTER, task_id, tmp_path, wait_for=2, timeout_s=30, poll_s=0.05,
        progress=messages.append,
    )
    thread.join()
    assert outcome.anchor_hash == anchor != head_hash(w3)
    assert len(outcome.admitted) == 2
    assert messages[-1].endswith("2 of 2 solution(s) announced")


def test_auto_release_settles_for_fewer_after_the_timeout(w3, tmp_path):
    task_id = post(w3, tmp_path, solutions_wanted=3)
    announce(w3, 1, task_id, head_hash(w3))
    started = time.monotonic()
    outcome = release(
        w3, POSTER, task_id, tmp_path, wait_for=3, timeout_s=0.4, poll_s=0.05
    )
    assert 0.4 <= time.monotonic() - started < 5
    assert len(outcome.admitted) == 1


def test_release_refusals(w3, tmp_path):
    task_id = post(w3, tmp_path)
    with pytest.raises(DataNodeError, match="no solution announced"):
        release(w3, POSTER, task_id, tmp_path)
    announce(w3, 1, task_id, head_hash(w3))
    with pytest.raises(DataNodeError, match="only the poster can release"):
        release(w3, ACCOUNTS[1], task_id, tmp_path)
    with pytest.raises(DataNodeError, match="there is no task 9"):
        release(w3, POSTER, 9, tmp_path)
    local = tmp_path / "tasks" / str(task_id) / "test_set.plds"
    local.write_bytes(local.read_bytes()[:-1] + b"\x00")
    with pytest.raises(DataNodeError, match="does not match"):
        release(w3, POSTER, task_id, tmp_path)


def test_valid_announcements_admit_one_per_miner_in_arrival_order_up_to_the_limit():
    parent = bytes(32)
    keys = [keccak(b"miner key %d" % i) for i in range(MAX_ADMITTED + 6)]
    announcements = [
        SolutionAnnouncement.sign(
            chain_id=CHAIN_ID, task_id=4, anchor_hash=parent, model_commitment=keccak(bytes([i])),
            train_bps=9000 + i, private_key=key,
        ).encode()
        for i, key in enumerate(keys)
    ]
    second_from_first_miner = SolutionAnnouncement.sign(
        chain_id=CHAIN_ID, task_id=4, anchor_hash=parent, model_commitment=keccak(b"again"),
        train_bps=10_000, private_key=keys[0],
    ).encode()
    chosen = valid_announcements(
        announcements[:1] + [second_from_first_miner, b"\x01garbage"] + announcements[1:]
        + announcements[:3],
        task_id=4, anchor_hash=parent, chain_id=CHAIN_ID,
    )
    assert len(chosen) == MAX_ADMITTED
    # arrival order, the first announcement of each miner; a higher claim buys nothing
    assert [a.model_commitment for a in chosen] == [keccak(bytes([i])) for i in range(MAX_ADMITTED)]
    assert valid_announcements(announcements, task_id=4, anchor_hash=parent, chain_id=1) == []


# --- status ---------------------------------------------------------------------------


def test_status_summarises_an_open_task(w3, tmp_path):
    task_id = post(w3, tmp_path, reward_wei=ETHER * 3 // 2)
    announce(w3, 1, task_id, head_hash(w3))
    text = status(w3, task_id)
    assert text.splitlines()[0] == f"Task {task_id}: open"
    assert "1.5 ETH (in escrow)" in text
    assert "90.00 %" in text
    assert "2 wanted, 1 announced" in text
    with pytest.raises(DataNodeError, match="no task 42"):
        status(w3, 42)


# --- the command line's one-line errors ---------------------------------------------------


def test_cli_reports_missing_tasks_and_node_refusals_in_one_line(w3, devnode, capsys):
    args = build_parser("task").parse_args(["task", "status", "42", "--rpc", devnode.url])
    assert args.run(args) == 1
    assert capsys.readouterr().err == "pole task status: error: there is no task 42\n"
    # A JSON-RPC error that reaches the command (web3's Web3RPCError): the node's own words.
    assert task_cli._guarded("pole task status", lambda: w3.pole.get_task(42)) == 1
    err = capsys.readouterr().err
    assert err.startswith("pole task status: the node refused: no task 42") and err.count("\n") == 1
