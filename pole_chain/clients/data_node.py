"""The data node: post a training task, release its test set, follow it to settlement.

A data node has data and no compute. It talks to a PoLe node only through web3 (the
registry contract for the escrow, the `w3.pole` module for blobs and messages), the way a user's
script would:

    post_task   load and split the dataset; upload the training set and the model spec
                (public blobs); keep the salted test set secret in workdir/tasks/<id>/;
                send `post_task` with the reward in escrow; read the id from TaskPosted
    release     collect the miners' signed announcements for (task, anchor), upload the
                test set, sign a Release admitting the announced commitments, send it
    status      a readable summary of a task: open / settled / expired, reward, deadline,
                winner and accuracies, announcements

The test set is the data node's secret until the release (DESIGN.md, "One height"): only
its salted digest goes on chain, so no miner can train on it or brute-force it.

Local layout (one directory per task; `workdir` defaults to $POLE_HOME/data-node in the CLI):

    workdir/tasks/<id>/task.json      what was posted: digests, sizes, parameters, tx hash
    workdir/tasks/<id>/test_set.plds  the canonical (salted) encoding of the test set
    workdir/tasks/<id>/spec.json      the canonical model spec JSON
    workdir/tasks/<id>/release.json   written by release(): anchor, digest, admitted

and for a task posted encrypted (`encrypt=True`, docs/IPFE.md), the data node's secrets:

    workdir/tasks/<id>/ipfe_master_key.bin  the IPFE master secret key (derives every key)
    workdir/tasks/<id>/train_clear.bin      the clear training set, uploaded with the release

An encrypted task's miners train only after the data node has served their functional keys
at the task's anchor: `release` in auto mode does so while it waits (key_service.py).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import encode_hex, keccak, to_canonical_address, to_checksum_address, to_int
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.logs import DISCARD

from miner.datasets import (
    BUILTIN_DATASETS,
    Dataset,
    DatasetFormatError,
    decode_dataset,
    encode_dataset,
    load_builtin,
    load_user_dataset,
    split_dataset,
)
from miner.encrypted_tasks import EncryptedTaskError, encrypt_training_set
from miner.ipfe import IPFEError
from miner.messages import (
    MAX_ADMITTED,
    MessageError,
    Release,
    SolutionAnnouncement,
)
from miner.model_spec import (
    PREDEFINED_MODELS,
    ModelSpec,
    ModelSpecError,
    build_spec,
    model_spec_canonical_bytes,
    model_spec_from_json,
)
from miner.sml import MAX_SML_INPUT_DIM, SMLShapeError, check_sml_fits
from miner.bonds import format_ether, is_bonded
from miner.registry_client import RegistryTransactionError, registry_contract, send_registry_call
from miner.pole_module import attach_pole, error_code
from pole_chain.clients.key_service import (
    CLEAR_TRAIN_FILE,
    KeyService,
    load_master_key,
    master_key_path,
)
from vm_hooks.params import MAX_TASK_TIME_LIMIT, REGISTRY_ADDRESS
from vm_hooks.task import Task, TaskAnchor, TaskResult, TaskStatus

log = logging.getLogger("pole.data_node")

#: Registry limits (contracts/task_registry.vy), checked here for a clear message before
#: any gas is spent (the time limit's cap is the chain's, vm_hooks.params).
MAX_REWARD_WEI = 2**128 - 1
MAX_BPS = 10_000
#: A release admits at most this many commitments (miner/messages.py).
MAX_SOLUTIONS_WANTED = MAX_ADMITTED
#: Anchors remembered while waiting for announcements: a task's anchor moves only when another
#: task became best meanwhile and then ours again (docs/PROTOCOL.md, "Task anchor").
ANCHORS_WATCHED = 8
DEFAULT_RECEIPT_TIMEOUT_S = 180.0
DEFAULT_POLL_S = 0.5
#: `release --auto` repeats its countdown line this often while nothing changes.
COUNTDOWN_EVERY_S = 10.0
#: Init code returning the block's timestamp (TIMESTAMP PUSH1 0 MSTORE PUSH1 32 PUSH1 0
#: RETURN). Run by eth_call on the "pending" block it reads the node's clock, which a dev
#: node's evm_increaseTime moves and its head's timestamp does not show until a block is made.
CLOCK_PROBE = bytes.fromhex("4260005260206000f3")
#: EIP-1474 "resource not found": pole_task's answer for an unknown id (pole_chain/rpc/dispatch.py).
RESOURCE_NOT_FOUND = -32001

TASK_FILE = "task.json"
TEST_SET_FILE = "test_set.plds"
SPEC_FILE = "spec.json"
RELEASE_FILE = "release.json"

AccountLike = Union[LocalAccount, str, bytes]
Progress = Callable[[str], None]


class DataNodeError(RuntimeError):
    """Something a data node asked for cannot be done; the message says what and why."""


# --------------------------------------------------------------------------------------
# Preparing a task (no chain involved)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PreparedTask:
    """Everything post_task puts on chain or keeps secret, before anything is sent."""

    spec: ModelSpec
    spec_json: bytes  # canonical; keccak = the task's model_spec
    train: Dataset
    test: Dataset  # salted; keccak(encode) = the task's test_set_commitment
    train_blob: bytes
    test_blob: bytes
    #: An encrypted task (`encrypt=True`): the EncryptedTrainingSet miners fetch instead of
    #: train_blob (revealed with the release), and the IPFE master secret key the data node keeps.
    encrypted_blob: Optional[bytes] = None
    master_key: Optional[bytes] = None

    @property
    def model_spec_digest(self) -> bytes:
        return keccak(self.spec_json)

    @property
    def public_train_blob(self) -> bytes:
        """What miners fetch by the task's dataset digest."""
        return self.encrypted_blob if self.encrypted_blob is not None else self.train_blob

    @property
    def dataset_digest(self) -> bytes:
        return keccak(self.public_train_blob)

    @property
    def test_set_commitment(self) -> bytes:
        return keccak(self.test_blob)


def load_dataset(source: str | Path) -> Dataset:
    """A built-in dataset by name (digits, breast_cancer, wine, iris) or a .npz/.csv file."""
    text = str(source)
    if text in BUILTIN_DATASETS:
        return load_builtin(text)
    path = Path(text).expanduser()
    if path.suffix.lower() not in (".npz", ".csv"):
        raise DataNodeError(
            f"dataset {text!r} is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) "
            "nor a .npz or .csv file"
        )
    try:
        return load_user_dataset(path)
    except DatasetFormatError as error:
        raise DataNodeError(f"cannot load dataset: {error}") from None


def load_model_spec(model: str | Path, dataset: Dataset) -> ModelSpec:
    """A predefined architecture (logreg, mlp, cnn) sized for `dataset`, or a JSON spec file.

    A spec file's input must be an SML output of this dataset (miner/sml.py, `sml_layout`).
    """
    text = str(model)
    try:
        if text in PREDEFINED_MODELS:
            return build_spec(text, dataset.d, dataset.num_classes, dataset.image_shape)
        path = Path(text).expanduser()
        if not path.is_file():
            raise DataNodeError(
                f"model {text!r} is neither a predefined model ({', '.join(PREDEFINED_MODELS)}) "
                "nor a JSON spec file"
            )
        spec = model_spec_from_json(path.read_bytes())
    except ModelSpecError as error:
        raise DataNodeError(f"model spec: {error}") from None
    try:
        check_sml_fits(spec.input_shape, dataset.d)
    except SMLShapeError as error:
        raise DataNodeError(f"model spec does not fit the dataset: {error}") from None
    if spec.num_classes != dataset.num_classes:
        raise DataNodeError(
            f"model spec has {spec.num_classes} classes, the dataset {dataset.num_classes}"
        )
    return spec


def prepare_task(
    dataset: str | Path | Dataset,
    model: str | Path | ModelSpec,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    test_salt: bytes | None = None,
    encrypt: bool = False,
    progress: bool = False,
) -> PreparedTask:
    """Load, split and encode: the public training set and spec, the secret test set.
    With `encrypt`, the training features are published IPFE-encrypted (docs/IPFE.md)."""
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if data.d > MAX_SML_INPUT_DIM:
        raise DataNodeError(f"dataset has {data.d} features, the SML takes at most {MAX_SML_INPUT_DIM}")
    spec = model if isinstance(model, ModelSpec) else load_model_spec(model, data)
    try:
        train, test = split_dataset(data, test_fraction, seed, test_salt=test_salt)
    except ValueError as error:
        raise DataNodeError(f"cannot split the dataset: {error}") from None
    encrypted_blob = master_key = None
    if encrypt:
        try:
            encrypted, msk = encrypt_training_set(train, progress=progress, workers=2)
        except (IPFEError, EncryptedTaskError) as error:
            raise DataNodeError(f"cannot encrypt this training set: {error}") from None
        encrypted_blob, master_key = encrypted.encode(), msk.to_bytes()
    return PreparedTask(
        spec=spec,
        spec_json=model_spec_canonical_bytes(spec),
        train=train,
        test=test,
        train_blob=encode_dataset(train),
        test_blob=encode_dataset(test),
        encrypted_blob=encrypted_blob,
        master_key=master_key,
    )


# --------------------------------------------------------------------------------------
# Posting
# --------------------------------------------------------------------------------------


def as_account(account: AccountLike) -> LocalAccount:
    """A LocalAccount from itself or a private key (hex string or 32 bytes)."""
    if isinstance(account, LocalAccount):
        return account
    try:
        return Account.from_key(account)
    except (ValueError, TypeError) as error:
        raise DataNodeError(f"not a valid private key: {error}") from None


def check_task_parameters(
    *, reward_wei: int, min_train_bps: int, time_limit_s: int, solutions_wanted: int
) -> None:
    """The registry's rules (and the release's admission limit), before any gas is spent."""
    if not 0 < reward_wei <= MAX_REWARD_WEI:
        raise DataNodeError(f"reward must be positive and below 2^128 wei, got {reward_wei}")
    if not 0 <= min_train_bps <= MAX_BPS:
        raise DataNodeError(f"minimum training accuracy must be 0..10000 bps, got {min_train_bps}")
    if not 0 < time_limit_s <= MAX_TASK_TIME_LIMIT:
        raise DataNodeError(f"time limit must be 1..{MAX_TASK_TIME_LIMIT} s, got {time_limit_s}")
    if not 1 <= solutions_wanted <= MAX_SOLUTIONS_WANTED:
        raise DataNodeError(
            f"solutions wanted must be 1..{MAX_SOLUTIONS_WANTED} (a release admits at most "
            f"{MAX_ADMITTED}), got {solutions_wanted}"
        )


def post_task(
    w3: Web3,
    account: AccountLike,
    *,
    dataset: str | Path | Dataset,
    model: str | Path | ModelSpec,
    reward_wei: int,
    min_train_bps: int,
    time_limit_s: int,
    solutions_wanted: int,
    test_fraction: float = 0.2,
    seed: int = 0,
    workdir: str | Path,
    receipt_timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S,
    encrypt: bool = False,
    progress: bool = False,
) -> int:
    """Post a training task with `reward_wei` in escrow; returns the task id.

    The training set and the model spec are uploaded as blobs first (miners fetch them by
    the digests the task names), the secret test set is written to workdir before the
    transaction is sent (so a posted task always has its test set), and the id is read
    from the TaskPosted event of the receipt.
    """
    poster = as_account(account)
    check_task_parameters(
        reward_wei=reward_wei,
        min_train_bps=min_train_bps,
        time_limit_s=time_limit_s,
        solutions_wanted=solutions_wanted,
    )
    attach_pole(w3)
    _check_funds(w3, poster, reward_wei)
    prepared = prepare_task(dataset, model, test_fraction=test_fraction, seed=seed,
                            encrypt=encrypt, progress=progress)
    tasks_dir = Path(workdir).expanduser() / "tasks"

    _upload_public_blobs(w3, prepared)  # 1. the training set and the model spec

    # 2. the secret test set, on disk before the transaction exists
    staging = tasks_dir / f"posting-{prepared.test_set_commitment.hex()[:16]}"
    record = _task_record(
        w3, poster, prepared, dataset=dataset, model=model, test_fraction=test_fraction,
        seed=seed, reward_wei=reward_wei, min_train_bps=min_train_bps,
        time_limit_s=time_limit_s, solutions_wanted=solutions_wanted,
    )
    _write_task_dir(staging, record, prepared)

    # 3. the escrow transaction
    call = registry_contract(w3).functions.post_task(
        prepared.model_spec_digest, prepared.dataset_digest, prepared.test_set_commitment,
        min_train_bps, time_limit_s, solutions_wanted,
    )
    receipt = _transact(w3, poster, call, value=reward_wei, timeout_s=receipt_timeout_s)
    posted = _task_posted(w3, receipt)
    task_id = int(posted["task_id"])
    record.update(
        task_id=task_id,
        transaction=encode_hex(receipt["transactionHash"]),
        block_number=int(receipt["blockNumber"]),
        deadline=int(posted["deadline"]),
    )
    _save_json(staging / TASK_FILE, record)
    _move_into_place(staging, tasks_dir / str(task_id))
    return task_id


def _task_record(
    w3: Web3, poster: LocalAccount, prepared: PreparedTask, *, dataset: object, model: object,
    test_fraction: float, seed: int, reward_wei: int, min_train_bps: int, time_limit_s: int,
    solutions_wanted: int,
) -> dict:
    """What the task directory's task.json says about a task before its id exists."""
    return {
        "chain_id": w3.eth.chain_id,
        "registry": to_checksum_address(REGISTRY_ADDRESS),
        "poster": poster.address,
        "dataset": str(dataset) if not isinstance(dataset, Dataset) else "<in memory>",
        "model": str(model) if not isinstance(model, ModelSpec) else "<in memory>",
        "model_spec": encode_hex(prepared.model_spec_digest),
        "dataset_digest": encode_hex(prepared.dataset_digest),
        "test_set_commitment": encode_hex(prepared.test_set_commitment),
        "features": prepared.train.d,
        "num_classes": prepared.train.num_classes,
        "image_shape": list(prepared.train.image_shape) if prepared.train.image_shape else None,
        "train_samples": prepared.train.n,
        "test_samples": prepared.test.n,
        "test_fraction": test_fraction,
        "split_seed": seed,
        "reward_wei": str(reward_wei),
        "min_train_bps": min_train_bps,
        "time_limit_s": time_limit_s,
        "solutions_wanted": solutions_wanted,
        "encrypted": prepared.encrypted_blob is not None,
    }


def _check_funds(w3: Web3, poster: LocalAccount, reward_wei: int) -> None:
    """An unfunded key hears so in one line, before anything is uploaded or sent."""
    balance = int(w3.eth.get_balance(poster.address))
    if balance <= reward_wei:
        raise DataNodeError(
            f"{poster.address} holds {format_ether(balance)}; the reward is "
            f"{format_ether(reward_wei)} plus gas: fund this key (on a devnet, `pole accounts` "
            "lists funded keys)"
        )


def _upload_public_blobs(w3: Web3, prepared: PreparedTask) -> None:
    """The training set and the model spec, stored under the digests the task will name."""
    for name, blob, digest in (
        ("training set", prepared.public_train_blob, prepared.dataset_digest),
        ("model spec", prepared.spec_json, prepared.model_spec_digest),
    ):
        stored = w3.pole.put_blob(blob)
        if stored != digest:
            raise DataNodeError(
                f"node stored the {name} under {encode_hex(stored)}, expected {encode_hex(digest)}"
            )


def _task_posted(w3: Web3, receipt: dict) -> dict:
    """The arguments of the receipt's one TaskPosted event."""
    events = registry_contract(w3).events.TaskPosted().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise DataNodeError(
            f"transaction {encode_hex(receipt['transactionHash'])} has no TaskPosted event"
        )
    return events[0]["args"]


def _move_into_place(staging: Path, final: Path) -> None:
    """The staged task directory becomes tasks/<id>; files of a reused id are kept aside."""
    if final.exists():  # a previous chain (a reset devnet) used this id: keep its files
        aside = final.with_name(f"{final.name}.replaced-{int(time.time())}")
        log.warning("%s exists (another chain?); moved to %s", final, aside)
        final.rename(aside)
    staging.rename(final)


def _write_task_dir(directory: Path, record: dict, prepared: PreparedTask) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _write_bytes(directory / TEST_SET_FILE, prepared.test_blob)
    _write_bytes(directory / SPEC_FILE, prepared.spec_json)
    if prepared.master_key is not None:  # an encrypted task: the key service's secret, and
        _write_bytes(master_key_path(directory), prepared.master_key)  # the clear set for the release
        _write_bytes(directory / CLEAR_TRAIN_FILE, prepared.train_blob)
    _save_json(directory / TASK_FILE, record)


def _write_bytes(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _save_json(path: Path, obj: dict) -> None:
    _write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _transact(w3: Web3, sender: LocalAccount, call, *, value: int, timeout_s: float) -> dict:
    """Post the task's escrow transaction; any refusal becomes a one-line DataNodeError."""
    try:
        return send_registry_call(w3, sender, call, value=value, timeout_s=timeout_s,
                                  what="the task")
    except RegistryTransactionError as error:
        raise DataNodeError(str(error)) from None


# --------------------------------------------------------------------------------------
# The local record of a posted task
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LocalTask:
    """What workdir/tasks/<id>/ holds for a task this data node posted."""

    directory: Path
    record: dict
    test_blob: bytes

    @property
    def test_set_commitment(self) -> bytes:
        return keccak(self.test_blob)

    def test_set(self) -> Dataset:
        return decode_dataset(self.test_blob)

    def spec(self) -> ModelSpec:
        """The model spec posted with the task (written with the task's directory): an
        encrypted task's keys are for the SML of its model's input."""
        path = self.directory / SPEC_FILE
        try:
            return model_spec_from_json(path.read_bytes())
        except (OSError, ModelSpecError) as error:
            raise DataNodeError(f"{path}: cannot read the task's model spec: {error}") from None


def task_dir(workdir: str | Path, task_id: int) -> Path:
    return Path(workdir).expanduser() / "tasks" / str(task_id)


def load_local_task(workdir: str | Path, task_id: int) -> LocalTask:
    """The stored record and secret test set of task `task_id`; DataNodeError if absent."""
    directory = task_dir(workdir, task_id)
    try:
        record = json.loads((directory / TASK_FILE).read_text())
        test_blob = (directory / TEST_SET_FILE).read_bytes()
    except FileNotFoundError:
        raise DataNodeError(
            f"no test set for task {task_id} in {directory}: was it posted from this "
            "machine with this --workdir?"
        ) from None
    local = LocalTask(directory, record, test_blob)
    if encode_hex(local.test_set_commitment) != record.get("test_set_commitment"):
        raise DataNodeError(f"{directory / TEST_SET_FILE} does not match its recorded commitment")
    return local


def load_test_set(workdir: str | Path, task_id: int) -> Dataset:
    """The held-out test set of a task this data node posted (raw features 0..255)."""
    return load_local_task(workdir, task_id).test_set()


# --------------------------------------------------------------------------------------
# Release
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReleaseOutcome:
    task_id: int
    anchor_hash: bytes
    release: Release
    admitted: tuple[SolutionAnnouncement, ...]
    already_released: bool = False
    #: valid announcements left out because their miner holds no bond (miner/bonds.py)
    unbonded: tuple[SolutionAnnouncement, ...] = ()

    @property
    def digest(self) -> bytes:
        return self.release.digest


def valid_announcements(
    encoded: Iterable[bytes],
    *,
    task_id: int,
    anchor_hash: bytes,
    chain_id: int,
    min_train_bps: int = 0,
) -> list[SolutionAnnouncement]:
    """The announcements a release may admit: well-formed, signed, for this task and anchor,
    claiming at least the minimum training accuracy; one per miner (its first), in the order
    the node received them, at most a release's worth.

    Claims are not ranked: a claimed accuracy costs nothing to inflate, so ranking by it
    would let throwaway keys push honest miners out (docs/DATA_NODE.md, open points)."""
    chosen: dict[bytes, SolutionAnnouncement] = {}
    for raw in encoded:
        try:
            announcement = SolutionAnnouncement.decode(raw).verify(chain_id)
        except MessageError as error:
            log.warning("ignoring an announcement: %s", error)
            continue
        if announcement.task_id != task_id or announcement.anchor_hash != anchor_hash:
            continue
        if announcement.train_bps < min_train_bps:
            continue
        chosen.setdefault(announcement.miner, announcement)
    return list(chosen.values())[:MAX_ADMITTED]


def release(
    w3: Web3,
    account: AccountLike,
    task_id: int,
    workdir: str | Path,
    *,
    wait_for: int | None = None,
    timeout_s: float | None = None,
    poll_s: float = DEFAULT_POLL_S,
    progress: Progress | None = None,
) -> ReleaseOutcome:
    """Release task `task_id`'s test set to the miners that announced solutions.

    wait_for=None releases now, admitting whatever is announced for the task's anchor (at
    least one). wait_for=N polls until the anchor has N announcements, or until
    `timeout_s` (default: half the time left until the deadline by the node's clock) passes
    with at least one; `progress` hears a countdown meanwhile. Only bonded miners are
    admitted; the others are named to `progress` and in `ReleaseOutcome.unbonded`. Blocks
    keep coming meanwhile (idle or dev blocks) and change nothing: announcements and the
    release name the task's anchor, the block after which it became the best open task.
    """
    poster = as_account(account)
    attach_pole(w3)
    chain_id = w3.eth.chain_id
    say = progress or (lambda message: None)

    get_task(w3, task_id)  # an unknown task is named as such, before any local lookup
    local = load_local_task(workdir, task_id)
    task = _releasable_task(w3, poster, task_id, local)
    if timeout_s is None:
        timeout_s = max(0.0, (task.deadline - node_time(w3)) / 2)
    give_up_at = time.monotonic() + timeout_s
    countdown = _Countdown(task_id, wait_for, give_up_at, say)
    msk = load_master_key(local.directory)
    keys = None if msk is None else KeyService(w3, poster, task_id, msk, local.spec().input_shape, say=say)
    anchors: list[bytes] = []
    said_waiting = False
    while True:
        anchor = current_anchor(w3, task_id)
        if anchor is not None and anchor.hash not in anchors:
            anchors.append(anchor.hash)
            del anchors[:-ANCHORS_WATCHED]
        existing = _existing_release(w3, poster, task_id, anchors)
        if existing is not None:  # already on the node: nothing more to do
            return existing
        if keys is not None:  # an encrypted task: miners cannot train before their keys
            keys.serve()
        if anchor is None:
            parent, admitted, unbonded = b"", [], []
        else:
            parent, admitted, unbonded = _best_parent(w3, task, [anchor.hash], chain_id)
        countdown.report(len(admitted), unbonded)
        if wait_for is None or len(admitted) >= wait_for:
            break
        if time.monotonic() >= give_up_at:
            if admitted:
                say(f"task {task_id}: waited {timeout_s:.0f} s, releasing to {len(admitted)}")
                break
            if not said_waiting:
                say(
                    f"task {task_id}: no solution after {timeout_s:.0f} s; "
                    "waiting for one until the deadline"
                )
                said_waiting = True
        if node_time(w3) > task.deadline:
            if admitted:
                say(f"task {task_id}: deadline reached, releasing to {len(admitted)}")
                break
            raise DataNodeError(
                f"task {task_id} passed its deadline with no solution announced; it will "
                "expire and the reward will be refunded"
            )
        time.sleep(poll_s)
        task = _open_task(w3, task_id)
    if not admitted:
        raise DataNodeError(_nothing_announced(task_id, keys))
    outcome = _send_release(w3, poster, local, task, parent, admitted)
    return replace(outcome, unbonded=tuple(unbonded))


def _nothing_announced(task_id: int, keys: Optional[KeyService]) -> str:
    """Why a release has nothing to admit, and what to do about it."""
    text = f"no solution announced yet for task {task_id} at its anchor"
    if keys is None:
        return text + "; wait, or use auto mode"
    return (f"{text} ({len(keys.served)} miner(s) given keys so far): the miners of an encrypted "
            "task train only once this data node has served their keys, so use auto mode, "
            "which serves them while it waits")


def current_anchor(w3: Web3, task_id: int) -> Optional[TaskAnchor]:
    """Task `task_id`'s anchor at the node's head, or None while another task is the best
    (no block can answer it then)."""
    best = w3.pole.best_task()
    return best.anchor if best is not None and best.task_id == task_id else None


def settled_anchor(w3: Web3, result: TaskResult) -> TaskAnchor:
    """The anchor the winning block of a settled task answered: the registry's
    `best_anchor()` in its parent's state names its height, on the canonical chain."""
    parent_number = result.block_number - 1
    _, number = registry_contract(w3).functions.best_anchor().call(block_identifier=parent_number)
    return TaskAnchor(number, bytes(w3.eth.get_block(number)["hash"]))


def node_time(w3: Web3) -> int:
    """The node's clock: the timestamp its next block would get (CLOCK_PROBE)."""
    return to_int(w3.eth.call({"data": CLOCK_PROBE}, "pending"))


class _Countdown:
    """What `release --auto` tells a person while it waits: the count so far against the
    count wanted and the seconds left, on every change and every COUNTDOWN_EVERY_S; each
    miner left out for want of a bond, once."""

    def __init__(self, task_id: int, wanted: int | None, give_up_at: float, say: Progress) -> None:
        self.task_id, self.wanted, self.give_up_at, self.say = task_id, wanted, give_up_at, say
        self._last: tuple[int, int] | None = None
        self._next_at = 0.0
        self._named: set[bytes] = set()

    def report(self, admitted: int, unbonded: Sequence[SolutionAnnouncement]) -> None:
        for announcement in unbonded:
            if announcement.miner not in self._named:
                self._named.add(announcement.miner)
                line = (
                    f"task {self.task_id}: not admitting {to_checksum_address(announcement.miner)}: "
                    "the miner holds no bond in the registry"
                )
                log.warning("%s", line)
                self.say(line)
        now = time.monotonic()
        state = (admitted, len(unbonded))
        if state == self._last and (self.wanted is None or now < self._next_at):
            return
        self._last, self._next_at = state, now + COUNTDOWN_EVERY_S
        if self.wanted is None:
            self.say(f"task {self.task_id}: {admitted} solution(s) announced")
            return
        line = f"task {self.task_id}: {admitted} of {self.wanted} solution(s) announced"
        left = self.give_up_at - now
        if admitted < self.wanted and left > 0:
            line += (
                f"; waiting for {self.wanted - admitted} more, {left:.0f} s left before "
                "releasing to the ones announced"
            )
        self.say(line)


def _releasable_task(w3: Web3, poster: LocalAccount, task_id: int, local: LocalTask) -> Task:
    """The open task `task_id`, if `poster` posted it with the test set kept in `local`."""
    task = _open_task(w3, task_id)
    if task.poster != to_canonical_address(poster.address):
        raise DataNodeError(
            f"task {task_id} was posted by {to_checksum_address(task.poster)}, not by "
            f"{poster.address}: only the poster can release"
        )
    if task.test_set_commitment != local.test_set_commitment:
        raise DataNodeError(
            f"the test set in {local.directory} does not match task {task_id}'s on-chain "
            "commitment (was the chain reset after it was posted?)"
        )
    return task


def _existing_release(
    w3: Web3, poster: LocalAccount, task_id: int, anchors: Sequence[bytes]
) -> Optional[ReleaseOutcome]:
    """A release `poster` already sent for the task at one of the watched anchors."""
    for parent in anchors:
        existing = w3.pole.get_release(task_id, parent)
        if existing is not None:
            found = Release.decode(existing)
            if found.poster == to_canonical_address(poster.address):
                return ReleaseOutcome(task_id, parent, found, (), already_released=True)
    return None


def _send_release(
    w3: Web3,
    poster: LocalAccount,
    local: LocalTask,
    task: Task,
    parent: bytes,
    admitted: Sequence[SolutionAnnouncement],
) -> ReleaseOutcome:
    """Upload the test set (and an encrypted task's clear training set, which consensus
    verifies the training accuracy on), sign and send the release, note it in release.json."""
    clear_path = local.directory / CLEAR_TRAIN_FILE
    if clear_path.is_file():
        w3.pole.put_blob(clear_path.read_bytes())
    digest = w3.pole.put_blob(local.test_blob)
    if digest != task.test_set_commitment:
        raise DataNodeError(f"node stored the test set under {encode_hex(digest)}, expected the commitment")
    signed = Release.sign(
        chain_id=w3.eth.chain_id,
        task_id=task.task_id,
        anchor_hash=parent,
        test_set_digest=task.test_set_commitment,
        admitted=[a.model_commitment for a in admitted],
        private_key=poster.key,
    )
    w3.pole.release(signed.encode())
    outcome = ReleaseOutcome(task.task_id, parent, signed, tuple(admitted))
    _save_json(
        local.directory / RELEASE_FILE,
        {
            "anchor_hash": encode_hex(parent),
            "release_digest": encode_hex(signed.digest),
            "admitted": [
                {
                    "miner": to_checksum_address(a.miner),
                    "model_commitment": encode_hex(a.model_commitment),
                    "train_bps": a.train_bps,
                }
                for a in admitted
            ],
        },
    )
    return outcome


def get_task(w3: Web3, task_id: int) -> Task:
    """The task as the node's head sees it; DataNodeError if there is none."""
    try:
        return attach_pole(w3).pole.get_task(task_id)
    except Web3RPCError as error:
        if error_code(error) == RESOURCE_NOT_FOUND:
            raise DataNodeError(f"there is no task {task_id}") from None
        raise


def _open_task(w3: Web3, task_id: int) -> Task:
    task = get_task(w3, task_id)
    if not task.is_open:
        raise DataNodeError(f"task {task_id} is {task.status.label}: nothing to release")
    return task


def _best_parent(
    w3: Web3, task: Task, parents: Sequence[bytes], chain_id: int
) -> tuple[bytes, list[SolutionAnnouncement], list[SolutionAnnouncement]]:
    """The watched anchor with the most valid announcements from bonded miners (the latest
    one on a tie): (anchor, admissible, left out for want of a bond)."""
    best_parent, best, best_unbonded = parents[-1], [], []
    bonded: dict[bytes, bool] = {}
    for parent in parents:
        try:
            raw = w3.pole.announcements(task.task_id, parent)
        except Web3RPCError:
            continue  # that block is not the task's anchor
        found = valid_announcements(
            raw,
            task_id=task.task_id,
            anchor_hash=parent,
            chain_id=chain_id,
            min_train_bps=task.min_train_bps,
        )
        for announcement in found:
            if announcement.miner not in bonded:
                bonded[announcement.miner] = is_bonded(w3, announcement.miner)
        admissible = [a for a in found if bonded[a.miner]]
        if len(admissible) >= len(best):
            best_parent, best = parent, admissible
            best_unbonded = [a for a in found if not bonded[a.miner]]
    return best_parent, best, best_unbonded


# --------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------


def format_bps(bps: int) -> str:
    return f"{bps / 100:.2f} %"


#: Where a task's reward is, by its state (`pole task status`).
REWARD_NOTES = {
    TaskStatus.OPEN: "in escrow",
    TaskStatus.SETTLED: "paid to the winner",
    TaskStatus.EXPIRED: "refunded",
}


def status(w3: Web3, task_id: int) -> str:
    """A readable, multi-line summary of task `task_id` as the node's head sees it."""
    task = get_task(w3, task_id)
    lines = [f"Task {task_id}: {task.status.label}"]
    lines.append(f"  poster          {to_checksum_address(task.poster)}")
    lines.append(f"  reward          {format_ether(task.reward)} ({REWARD_NOTES[task.status]})")
    lines.append(f"  model spec      {encode_hex(task.model_spec)}")
    lines.append(f"  training set    {encode_hex(task.dataset_digest)}")
    lines.append(f"  min training    {format_bps(task.min_train_bps)}")
    remaining = task.deadline - node_time(w3)  # the node's clock: a dev head may stand still
    when = f"in {remaining} s" if remaining >= 0 else f"{-remaining} s ago"
    lines.append(f"  time limit      {task.time_limit} s (deadline at block time {task.deadline}, {when})")
    anchor = current_anchor(w3, task_id)
    parent = anchor.hash if anchor is not None else bytes(32)
    if task.result is not None:
        result = task.result
        parent = settled_anchor(w3, result).hash
        lines.append(
            f"  winner          {to_checksum_address(result.winner)} in block #{result.block_number}"
        )
        lines.append(
            f"  accuracy        training {format_bps(result.train_bps)}, test {format_bps(result.test_bps)}"
        )
        lines.append(f"  model           {encode_hex(result.model_commitment)}")
    announced = _count(w3.pole.announcements, task_id, parent)
    released = _release_at(w3, task_id, parent)
    solutions = f"{task.solutions_wanted} wanted, {announced} announced"
    unbonded = _unbonded_miners(w3, task, parent)
    if unbonded:
        solutions += f" ({unbonded} by miners without a bond: not admitted)"
    if released is not None:
        solutions += f", {len(released.admitted)} admitted by the release"
    lines.append(f"  solutions       {solutions}")
    return "\n".join(lines)


def task_lines(w3: Web3) -> list[str]:
    """`pole task list`: every task the registry knows, one line each, by id: state, reward,
    value (reward per second of time limit, what miners rank by), deadline by the node's
    clock, and the winner's accuracies once settled."""
    tasks = attach_pole(w3).pole.tasks()
    if not tasks:
        return ["no tasks"]
    now = node_time(w3)
    lines = []
    for task in tasks:
        value = task.reward / task.time_limit / 10**18  # for reading only: miners compare exactly
        line = (
            f"task {task.task_id}  {task.status.label:<7}  reward {format_ether(task.reward)}, "
            f"value {value:.4g} ETH/s, "
        )
        if task.result is not None:
            line += (
                f"won in block #{task.result.block_number} by "
                f"{to_checksum_address(task.result.winner)}: training "
                f"{format_bps(task.result.train_bps)}, test {format_bps(task.result.test_bps)}"
            )
        else:
            left = task.deadline - now
            line += f"deadline in {left} s" if left >= 0 else f"deadline {-left} s ago"
        lines.append(line)
    return lines


def _unbonded_miners(w3: Web3, task: Task, parent: bytes) -> int:
    """How many miners announced a valid solution at `parent` without holding a bond."""
    try:
        raw = w3.pole.announcements(task.task_id, parent)
    except Web3RPCError:
        return 0
    found = valid_announcements(
        raw, task_id=task.task_id, anchor_hash=parent, chain_id=w3.eth.chain_id
    )
    return sum(1 for announcement in found if not is_bonded(w3, announcement.miner))


def _count(fetch: Callable[[int, bytes], list], task_id: int, parent: bytes) -> int:
    try:
        return len(fetch(task_id, parent))
    except Web3RPCError:
        return 0


def _release_at(w3: Web3, task_id: int, parent: bytes) -> Optional[Release]:
    try:
        raw = w3.pole.get_release(task_id, parent)
    except Web3RPCError:
        return None
    return Release.decode(raw) if raw else None

