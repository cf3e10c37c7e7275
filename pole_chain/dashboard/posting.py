"""The data node behind the page's forms, on a dev node only.

Posting a task needs the data node's Python logic: split the dataset, keep the salted test
set secret, upload the public blobs, send the registry transaction (pole_chain/clients/
data_node.py). `DevDataNode` runs exactly that logic in the node process, as a JSON-RPC
client of the node itself, signing with a dev account chosen by index. The keys are the
devnet's public test-mnemonic keys (`pole accounts`); they never leave the process. A node
that is not a dev node has no `DevDataNode`: the page shows the equivalent `pole task post`
command instead, so the user signs with their own key on their own machine.

    parse_form(obj, workdir)  the form's JSON -> TaskForm (FormError: one line, nothing sent)
    post(form)                post_task with a dev account, IPFE-encrypted if asked; an
                              auto-release thread if asked (an encrypted task needs it: its
                              loop serves the miners' key requests)
    release(task_id)          release now to the announced solutions (the page's button)
    log                       what this data node did, newest last (the page's action log)

Uploaded datasets and custom model specs are written under workdir/uploads/ and passed to
data_node.py by path, so its checks (format, SML input size, class count) are the only ones.
"""
from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Optional

from eth_account.signers.local import LocalAccount
from eth_utils import encode_hex, keccak, to_checksum_address

from miner.datasets import BUILTIN_DATASETS
from miner.model_spec import PREDEFINED_MODELS
from vm_hooks.genesis import dev_accounts

#: Kept in the action log (the page shows the newest).
LOG_LENGTH = 500
#: An uploaded dataset's largest size (the RPC body limit bounds the request anyway).
MAX_UPLOAD_BYTES = 6 * 1024 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class FormError(ValueError):
    """The form cannot be posted; the message says which field and why. Nothing was sent."""


@dataclass(frozen=True)
class TaskForm:
    account_index: int
    dataset: str  # a built-in name or the path of the saved upload
    model: str  # a predefined name or the path of the saved spec JSON
    reward_wei: int
    min_train_bps: int
    time_limit_s: int
    solutions_wanted: int
    test_fraction: float
    auto_release: bool
    encrypted: bool  # IPFE-encrypt the training features (docs/IPFE.md)


def _field(obj: dict, name: str, label: str) -> Any:
    if name not in obj or obj[name] in (None, ""):
        raise FormError(f"{label} is missing")
    return obj[name]


def _decimal(text: Any, label: str) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise FormError(f"{label} is not a number: {str(text)[:40]!r}") from None
    if not value.is_finite():
        raise FormError(f"{label} is not a number: {str(text)[:40]!r}")
    return value


def _integer(text: Any, label: str) -> int:
    value = _decimal(text, label)
    if value != value.to_integral_value():
        raise FormError(f"{label} must be a whole number, got {text}")
    return int(value)


def _boolean(obj: dict, name: str, label: str, default: bool) -> bool:
    """A checkbox: JSON true or false only (bool("false") would be True)."""
    value = obj.get(name, default)
    if not isinstance(value, bool):
        raise FormError(f"{label} must be true or false, got {repr(value)[:40]}")
    return value


def parse_form(obj: Any, workdir: Path) -> TaskForm:
    """The page's form as a TaskForm; uploads saved under workdir/uploads/.

    Units are the command line's (`pole task post`): reward in ether, training accuracy as
    a fraction 0..1. The ranges of the registry (reward > 0, time limit, solutions) are
    checked by data_node.check_task_parameters, the one place that knows them.
    """
    if not isinstance(obj, dict):
        raise FormError("the form must be a JSON object")
    accounts = dev_accounts()
    index = _integer(_field(obj, "account", "account"), "account")
    if not 0 <= index < len(accounts):
        raise FormError(f"account must be one of the {len(accounts)} dev accounts (0..{len(accounts) - 1})")
    reward = _decimal(_field(obj, "reward", "reward"), "reward")
    wei = reward * 10**18
    if wei != wei.to_integral_value():
        raise FormError(f"reward has more than 18 decimals: {reward}")
    if not reward > 0:
        raise FormError(f"reward must be a positive amount of ether, got {reward}")
    accuracy = _decimal(_field(obj, "accuracy", "training accuracy"), "training accuracy")
    if not 0 <= accuracy <= 1:
        raise FormError(
            f"training accuracy is a fraction between 0 and 1 (0.9 = 90 %), got {accuracy}"
        )
    test_fraction = float(_decimal(obj.get("testFraction", "0.2"), "test fraction"))
    if not 0 < test_fraction < 1:
        raise FormError(f"test fraction must be between 0 and 1, got {test_fraction}")
    auto_release = _boolean(obj, "autoRelease", "automatic release", True)
    encrypted = _boolean(obj, "encrypted", "encrypted", False)
    if encrypted and not auto_release:
        # the page's data node serves key requests only from the automatic release's loop
        raise FormError("an encrypted task needs the automatic release: it serves the miners' "
                        "key requests while it waits for their solutions")
    return TaskForm(
        account_index=index,
        dataset=_dataset(obj.get("dataset"), workdir),
        model=_model(obj.get("model"), workdir),
        reward_wei=int(wei),
        min_train_bps=int((accuracy * 10000).to_integral_value()),
        time_limit_s=_integer(_field(obj, "timeLimit", "time limit"), "time limit"),
        solutions_wanted=_integer(_field(obj, "solutions", "solutions to wait for"),
                                  "solutions to wait for"),
        test_fraction=test_fraction,
        auto_release=auto_release,
        encrypted=encrypted,
    )


def _dataset(value: Any, workdir: Path) -> str:
    if isinstance(value, str):
        if value not in BUILTIN_DATASETS:
            raise FormError(f"dataset {value[:40]!r} is not a built-in dataset ({', '.join(BUILTIN_DATASETS)})")
        return value
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise FormError("dataset: choose a built-in dataset or upload a .npz or .csv file")
    name = _SAFE_NAME.sub("_", Path(value["name"]).name)[-80:]
    if Path(name).suffix.lower() not in (".npz", ".csv"):
        raise FormError(f"dataset file {name!r} is neither .npz (arrays X, y) nor .csv (label last)")
    try:
        data = base64.b64decode(str(value.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        raise FormError(f"dataset file {name!r} did not arrive intact (bad base64)") from None
    if not data:
        raise FormError(f"dataset file {name!r} is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise FormError(f"dataset file is {len(data)} bytes, the page takes at most {MAX_UPLOAD_BYTES}")
    return str(_save(workdir, f"{keccak(data).hex()[:12]}-{name}", data))


def _model(value: Any, workdir: Path) -> str:
    if isinstance(value, str):
        if value not in PREDEFINED_MODELS:
            raise FormError(f"model {value[:40]!r} is not a predefined model ({', '.join(PREDEFINED_MODELS)})")
        return value
    if not isinstance(value, dict) or not isinstance(value.get("json"), str):
        raise FormError("model: choose a predefined model or give a custom architecture (JSON)")
    data = value["json"].encode("utf-8")
    if not data.strip():
        raise FormError("model spec: the custom architecture is empty")
    return str(_save(workdir, f"spec-{keccak(data).hex()[:12]}.json", data))


def _save(workdir: Path, name: str, data: bytes) -> Path:
    path = workdir / "uploads" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class DevDataNode:
    """A data node with the devnet's accounts, posting and releasing for the page."""

    def __init__(self, rpc_url: str, workdir: Path) -> None:
        from miner.pole_module import pole_web3

        self.rpc_url = rpc_url
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.w3 = pole_web3(rpc_url)
        self.accounts: list[LocalAccount] = dev_accounts()
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self.auto: dict[int, str] = {}  # task id -> "waiting" | "released" | "failed: ..."

    # ----------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        with self._lock:
            self._log.append({"time": time.time(), "text": text})
            del self._log[:-LOG_LENGTH]

    @property
    def log(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    def posted_here(self) -> list[int]:
        """Task ids whose secret test set this data node holds (it can release them)."""
        tasks = self.workdir / "tasks"
        if not tasks.is_dir():
            return []
        return sorted(int(p.name) for p in tasks.iterdir() if p.name.isdigit())

    # ----------------------------------------------------------------------------------

    def post(self, form: TaskForm) -> dict[str, Any]:
        """Post the task (DataNodeError/FormError: nothing was sent); start auto-release."""
        from pole_chain.clients.data_node import DataNodeError, post_task
        from miner.datasets import DatasetFormatError
        from miner.model_spec import ModelSpecError

        account = self.accounts[form.account_index]
        try:
            task_id = post_task(
                self.w3, account, dataset=form.dataset, model=form.model,
                reward_wei=form.reward_wei, min_train_bps=form.min_train_bps,
                time_limit_s=form.time_limit_s, solutions_wanted=form.solutions_wanted,
                test_fraction=form.test_fraction, workdir=self.workdir,
                encrypt=form.encrypted,
            )
        except (DataNodeError, DatasetFormatError, ModelSpecError) as error:
            raise FormError(str(error)) from None
        self.say(
            f"posted {'encrypted ' if form.encrypted else ''}task {task_id} from "
            f"{account.address}: {Path(form.dataset).name}, "
            f"{Path(form.model).name}, reward {Decimal(form.reward_wei) / 10**18} ETH, "
            f"training accuracy {form.min_train_bps / 100:.2f} %, {form.time_limit_s} s, "
            f"waiting for {form.solutions_wanted} solution(s)"
        )
        if form.auto_release:
            self._start_auto_release(task_id, account, form.solutions_wanted)
        return {"taskId": task_id, "poster": account.address}

    def _start_auto_release(self, task_id: int, account: LocalAccount, wanted: int) -> None:
        from pole_chain.clients.data_node import DataNodeError, release

        def run() -> None:
            self.auto[task_id] = "waiting"
            try:
                outcome = release(self.w3, account, task_id, self.workdir, wait_for=wanted,
                                  progress=self.say)
            except DataNodeError as error:
                self.auto[task_id] = f"failed: {error}"
                self.say(f"task {task_id}: automatic release failed: {error}")
                return
            except Exception as error:  # the node went away, ...: logged, never raised
                self.auto[task_id] = f"failed: {type(error).__name__}: {error}"
                self.say(f"task {task_id}: automatic release stopped: {type(error).__name__}: {error}")
                return
            self.auto[task_id] = "released"
            self._said_released(outcome)

        self.say(f"task {task_id}: will release automatically once {wanted} solution(s) are announced")
        threading.Thread(target=run, name=f"dashboard-release-{task_id}", daemon=True).start()

    def release(self, task_id: int) -> dict[str, Any]:
        """Release now to whatever is announced (at least one solution)."""
        from pole_chain.clients.data_node import DataNodeError, get_task, release

        try:
            task = get_task(self.w3, task_id)
            account = next((a for a in self.accounts
                            if to_checksum_address(a.address) == to_checksum_address(task.poster)), None)
            if account is None:
                raise FormError(f"task {task_id} was posted by {to_checksum_address(task.poster)}, "
                                "which is not a dev account: release it with `pole task release`")
            outcome = release(self.w3, account, task_id, self.workdir)
        except DataNodeError as error:
            raise FormError(str(error)) from None
        self._said_released(outcome)
        return {"taskId": task_id, "admitted": len(outcome.release.admitted),
                "digest": encode_hex(outcome.digest), "alreadyReleased": outcome.already_released}

    def _said_released(self, outcome: Any) -> None:
        verb = "was already released" if outcome.already_released else "released its test set"
        self.say(f"task {outcome.task_id} {verb}: release {encode_hex(outcome.digest)[:14]}… "
                 f"admits {len(outcome.release.admitted)} solution(s)")

    def auto_state(self, task_id: int) -> Optional[str]:
        return self.auto.get(task_id)
