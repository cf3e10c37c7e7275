"""The miner process: one task anchor at a time (DESIGN.md, "One height, step by step";
docs/PROTOCOL.md, "Task anchor").

    task      T = the best open task at the node's head (pole_bestTask) and its anchor A,
              the block after which T became best; each (T, A) is worked on once
    data      training set and model spec, fetched by digest and checked against T
    train     behind model_sml(A, miner, spec) until the integer model meets T.min_train_bps
    commit    sign and announce (task, A, commitment, train_bps); weights stay private
    release   wait for the poster's release for (T, A): check_release (signed by T's
              poster, for T at A, names T's test-set commitment, admits our commitment)
    reveal    evaluate on the released test set, reveal the model blob, seal a block on
              the node's current head (any descendant of A): the node builds it
              (pole_buildBlock), the miner checks it carries its seal, signs it with the
              coinbase key and submits it (pole_submitBlock)

Idle blocks keep coming while the miner trains: the head moving changes nothing as long as
(T, A) stays. Work is abandoned when the best task or its anchor changes before the poster
released (someone else's block won, or another task became best), the deadline passes
without a release, or the release does not admit us; each stop is logged with its reason.
Once released we seal even if a sibling already settled T at the head: then on that
sibling's parent, and fork choice keeps the best test accuracy. A seal refused because the
head moved meanwhile, or a sealed block that did not end up in the chain (T is still best
at a later head), is sealed again on the new head with the same model: the commitment is
bound to A, not to the parent. The miner talks to its node only through web3 (`w3.eth` and
the `w3.pole` module), like any user.

`Miner.step()` does one (task, anchor) and returns a `HeightResult`; `Miner.run()` loops over steps,
backs off on node errors and never exits on one. Tests drive `step()` directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import partial
from enum import Enum
from typing import Callable, Mapping, Optional

import requests
import rlp
from eth_account.signers.local import LocalAccount
from eth_keys import keys
from eth_utils import encode_hex, keccak, to_canonical_address
from web3 import Web3
from web3.exceptions import Web3Exception, Web3RPCError

from miner.datasets import Dataset, DatasetFormatError, decode_dataset
from miner.distributed import ReplicaGroupBroken, Replicas
from miner.encrypted_tasks import (
    EncryptedTaskError,
    EncryptedTrainingSet,
    decode_training_blob,
)
from miner.integer_eval import evaluate_integer_model
from miner.integer_model import (
    IntegerModel,
    ModelFormatError,
    check_model_matches_task,
    decode_model,
    encode_model,
)
from miner.key_requests import KeysNotServed, obtain_training_inputs
from miner.messages import MessageError, Release, SolutionAnnouncement, commitment_for
from miner.release_rules import CommitmentNotAdmitted, ReleaseRefused, check_release
from miner.model_spec import ModelSpec, ModelSpecError, model_spec_from_json
from miner.sml import SML, SMLShapeError, check_sml_fits, model_sml
from miner.quantize import TrainingDiverged
from miner.training import Hyperparams, resolve_device, train_model
from miner.pole_module import attach_pole, error_message
from vm_hooks.seal import Seal, SealError, read_seal, sign_header, signing_hash
from vm_hooks.task import Task, TaskAnchor
from vm_hooks.vm import PoLePragueVM

log = logging.getLogger("pole.miner")

#: Share of the time left until the task's deadline that training may use; the rest is for
#: the poster's release, the reveal and the seal.
DEFAULT_TRAIN_FRACTION = 0.5
DEFAULT_POLL_S = 1.0
#: A poster may release at its deadline; keep listening this long past it before giving up.
RELEASE_GRACE_S = 5.0
#: Seals of one model tried in a row while the node's head keeps moving under them.
SEAL_ATTEMPTS = 3
#: Back-off after a node error in `run()`: doubles from the poll interval up to this.
MAX_BACKOFF_S = 30.0
#: Decoded training sets and model specs kept by digest (tasks come back height after height).
BLOB_CACHE_ENTRIES = 8

#: Errors that mean "the node is unreachable or refused a call": log, back off, retry.
#: web3 raises Web3RPCError for a JSON-RPC error; requests' errors are OSErrors.
TRANSIENT_ERRORS = (OSError, Web3Exception)


class NodeUnreachable(RuntimeError):
    """The node failed every call for `MinerConfig.give_up_after_s` seconds in a row."""


class BadNodeAnswer(Web3Exception):
    """The node answered with bytes that fail the miner's own check (a blob that does not
    hash to its digest, another commitment than ours): handled like a node error."""


class Outcome(Enum):
    """How a call to `Miner.step()` ended."""

    SEEN = "height already worked on"
    NO_TASK = "no open task"
    OVERDUE = "best task overdue"
    DATA_MISSING = "task data not available yet"
    BAD_TASK = "task data unusable"
    TARGET_MISSED = "training target not met"
    ANCHOR_CHANGED = "best task or its anchor changed"
    DEADLINE_PASSED = "deadline passed without a release"
    BAD_RELEASE = "release unusable"
    NOT_ADMITTED = "release does not admit us"
    REFUSED = "node refused the seal"
    SEALED = "sealed"
    STOPPED = "stopped"


#: Outcomes after which this (task, anchor) is done: later steps wait for another one.
_ANCHOR_DONE = {
    Outcome.BAD_TASK,
    Outcome.TARGET_MISSED,
    Outcome.DEADLINE_PASSED,
    Outcome.BAD_RELEASE,
    Outcome.NOT_ADMITTED,
    Outcome.REFUSED,
    Outcome.SEALED,
}


@dataclass(frozen=True)
class HeightResult:
    outcome: Outcome
    head_number: int
    head_hash: bytes
    task_id: Optional[int] = None
    reason: str = ""
    announced: bool = False  # an announcement went out for this height
    commitment: Optional[bytes] = None
    train_bps: Optional[int] = None
    test_bps: Optional[int] = None
    block_hash: Optional[bytes] = None  # the sealed block

    @property
    def finished_attempt(self) -> bool:
        """Trained, announced and then sealed, refused or abandoned: what `--once` waits for."""
        return self.announced and self.outcome is not Outcome.STOPPED


@dataclass(frozen=True)
class MinerConfig:
    seed: int = 0
    hyperparams: Hyperparams = Hyperparams()
    train_fraction: float = DEFAULT_TRAIN_FRACTION
    poll_s: float = DEFAULT_POLL_S
    release_grace_s: float = RELEASE_GRACE_S
    progress: bool = True  # tqdm bar while training (shown only on a terminal)
    #: run() raises NodeUnreachable after node errors for this long in a row (None: never);
    #: `pole mine --once` sets it, so a dead node ends the attempt instead of hanging.
    give_up_after_s: Optional[float] = None
    #: where the float model trains (cpu, cuda, cuda:N); what is committed is computed on CPU
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if not self.poll_s > 0:
            raise ValueError(f"poll_s must be positive, got {self.poll_s}")
        resolve_device(self.device)  # ValueError for an unknown or absent device


@dataclass(frozen=True)
class Head:
    number: int
    hash: bytes
    timestamp: int


@dataclass(frozen=True)
class _Work:
    """What training produced for one (task, anchor): kept so a retried step does not
    retrain, and a block that did not make it into the chain is sealed again."""

    head: Head  # when training started
    task: Task
    anchor: TaskAnchor
    train: Dataset
    sml: SML
    model: IntegerModel
    blob: bytes
    commitment: bytes
    train_bps: int
    seconds: float
    epochs: int
    announced: bool = False


@dataclass(frozen=True)
class _Sealed:
    """The block this miner sealed for a (task, anchor): to seal it again on a later head
    if it does not end up in the chain."""

    work: _Work
    release: Release
    test: Dataset
    parent: bytes  # the parent the block was sealed on


#: A task and the anchor it is worked on at: what a miner does once.
_AnchorKey = tuple[int, Optional[TaskAnchor]]


def _anchor_key(task: Task) -> _AnchorKey:
    return task.task_id, task.anchor


class _Stop(Exception):
    """Ends a step early with an outcome (raised inside `step`, never outside)."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


def short(value: bytes) -> str:
    return encode_hex(value)[:10] + "…"


def percent(bps: int) -> str:
    """An accuracy in basis points as a person reads it: 9512 -> `95.12 %`."""
    return f"{bps / 100:.2f} %"


class Miner:
    """A PoLe miner bound to one node (`w3`, given the `pole` module) and one key
    (`account`, the coinbase). With `replicas` (rank 0 of a miner.distributed group, on
    `config.device`) it trains data-parallel with the group's other processes."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        config: MinerConfig = MinerConfig(),
        *,
        clock: Callable[[], float] = time.time,
        replicas: Optional[Replicas] = None,
    ) -> None:
        self.w3 = attach_pole(w3)
        self.account = account
        self.address = to_canonical_address(account.address)
        self.config = config
        self.replicas = replicas
        self._clock = clock
        self._stop = threading.Event()
        self._chain_id: Optional[int] = None
        self._done: Optional[_AnchorKey] = None  # the (task, anchor) last finished
        self._sealed: Optional[_Sealed] = None  # what was sealed for it, to seal it again
        self._work: Optional[_Work] = None
        self._decoded: OrderedDict[bytes, object] = OrderedDict()  # digest -> Dataset | ModelSpec
        self._decrypted: Optional[tuple] = None  # ((dataset digest, anchor), (train, sml)) of an encrypted task
        self._bad: dict[bytes, str] = {}  # digest -> why it cannot be used
        self._last_note: Optional[tuple] = None  # what _note logged last

    # -- control ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` (and a step waiting for a release) to return soon."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, once: bool = False) -> Optional[HeightResult]:
        """Step height after height until `stop()`; with `once`, until one finished attempt.

        Node errors are logged and retried with a doubling back-off; they end the loop only
        after `config.give_up_after_s` of them in a row (NodeUnreachable). Training
        processes that fell out of step (ReplicaGroupBroken) end it at once.
        Returns the last step's result (None if no step completed).
        """
        backoff = self.config.poll_s
        failures = 0  # consecutive failed steps: the first is a warning, repeats are debug
        failing_since = 0.0
        result: Optional[HeightResult] = None
        while not self._stop.is_set():
            try:
                result = self.step()
            except TRANSIENT_ERRORS as error:
                failures += 1
                failing_since = failing_since if failures > 1 else time.monotonic()
                limit = self.config.give_up_after_s
                if limit is not None and time.monotonic() - failing_since >= limit:
                    raise NodeUnreachable(
                        f"the node has not answered for {limit:.0f} s ({_describe(error)})"
                    ) from None
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "node error: %s; retrying (back-off up to %.0f s)",
                        _describe(error), MAX_BACKOFF_S)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            except ReplicaGroupBroken:  # no retry can bring the processes back in step
                raise
            except Exception:  # an answer we could not handle: keep mining, say what it was
                failures += 1
                log.exception("unexpected error; retrying in %.1f s", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if failures:
                log.info("node answers again after %d failed attempt(s)", failures)
            failures, backoff = 0, self.config.poll_s
            if once and result.finished_attempt:
                break
            if result.outcome not in (Outcome.ANCHOR_CHANGED, Outcome.SEALED):
                self._stop.wait(self.config.poll_s)  # nothing new to do until the head moves
        return result

    # -- one height -------------------------------------------------------------------

    def step(self) -> HeightResult:
        """Work on the best task at its anchor once: from task selection to the sealed block."""
        head = self.head()
        task: Optional[Task] = None
        work: Optional[_Work] = None
        try:
            task = self._select_task(head)
            if _anchor_key(task) == self._done:
                return self._answered_again(head, task)
            work = self._work_for(head, task)
            release, test = self._await_release(work)
            result = self._reveal_and_seal(work, release, test)
        except _Stop as stop:
            result = HeightResult(
                stop.outcome,
                head.number,
                head.hash,
                task_id=task.task_id if task else None,
                reason=stop.reason,
                announced=bool(work and work.announced),
                commitment=work.commitment if work else None,
                train_bps=work.train_bps if work else None,
            )
            self._note(head, task, result)
        if result.outcome in _ANCHOR_DONE and task is not None:
            self._done = _anchor_key(task)
            self._work = None
        return result

    def _answered_again(self, head: Head, task: Task) -> HeightResult:
        """A (task, anchor) already finished: nothing to do, unless our sealed block is not
        in this head's chain (the task would be settled there), e.g. its parent lost to a
        heavier branch before the block reached the node. Then the same model is sealed
        again on this head: its commitment is bound to the anchor, not to the parent."""
        sealed = self._sealed
        if sealed is None or _anchor_key(sealed.work.task) != _anchor_key(task) or sealed.parent == head.hash:
            return HeightResult(Outcome.SEEN, head.number, head.hash, task_id=task.task_id)
        log.info(
            "%s: our block on %s is not in the chain at block %d; sealing the same model again",
            _where(task, head), short(sealed.parent), head.number,
        )
        return self._reveal_and_seal(sealed.work, sealed.release, sealed.test)

    def head(self) -> Head:
        block = self.w3.eth.get_block("latest")
        return Head(int(block["number"]), bytes(block["hash"]), int(block["timestamp"]))

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def now(self, head: Head) -> float:
        """Chain time as well as the miner can tell: the head's timestamp or the wall clock."""
        return max(float(head.timestamp), self._clock())

    # -- 1. task ----------------------------------------------------------------------

    def _select_task(self, head: Head) -> Task:
        task = self.w3.pole.best_task()
        if task is None:
            raise _Stop(Outcome.NO_TASK, "no open task")
        if task.anchor is None:
            raise BadNodeAnswer(f"the node names no anchor for best task {task.task_id}")
        if not task.is_open:
            raise _Stop(Outcome.NO_TASK, f"best task {task.task_id} is {task.status.label}")
        if task.deadline <= head.timestamp:
            raise _Stop(Outcome.OVERDUE, f"deadline {task.deadline} is not after the head's time {head.timestamp}")
        return task

    # -- 2-4. data, training, announcement ---------------------------------------------

    def _work_for(self, head: Head, task: Task) -> _Work:
        work = self._work
        if work is None or _anchor_key(work.task) != _anchor_key(task):
            work = self._work = self._train(head, task)
        if not work.announced:
            announcement = SolutionAnnouncement.sign(
                chain_id=self.chain_id,
                task_id=task.task_id,
                anchor_hash=work.anchor.hash,
                model_commitment=work.commitment,
                train_bps=work.train_bps,
                private_key=self.account.key,
            )
            self.w3.pole.announce(announcement.encode())
            work = self._work = replace(work, announced=True)
            log.info(
                "%s: trained to %s training accuracy in %.1f s (%d epochs), announced %s",
                _where(task, head), percent(work.train_bps), work.seconds, work.epochs,
                short(work.commitment),
            )
        return work

    def _train(self, head: Head, task: Task) -> _Work:
        train = self._fetch(task.dataset_digest, "training set", _decode_training_set)
        spec = self._fetch(task.model_spec, "model spec", _decode_spec)
        _check_task_data(spec, train)
        time_left = task.deadline - self.now(head)
        if time_left <= 0:
            raise _Stop(Outcome.OVERDUE, f"deadline {task.deadline} has passed")
        assert task.anchor is not None  # _select_task checked it
        anchor = task.anchor
        sml = model_sml(anchor.hash, self.address, spec.input_shape, train.d)
        train, fitted_sml = self._training_inputs(task, train, sml)
        try:
            trained = train_model(
                spec,
                train,
                fitted_sml,
                target_train_bps=task.min_train_bps,
                time_limit_s=time_left * self.config.train_fraction,
                seed=self.config.seed,
                hyperparams=self.config.hyperparams,
                progress=self.config.progress,
                should_stop=self._abandon_check(task),
                device=self.config.device,
                replicas=self.replicas,
            )
        except TrainingDiverged as error:
            raise _Stop(Outcome.TARGET_MISSED, f"{error} (try a lower learning rate)") from None
        if self._stop.is_set():
            raise _Stop(Outcome.STOPPED, "stopped during training")
        try:
            moved = self._anchor_changed(task)
        except TRANSIENT_ERRORS:
            moved = False  # cannot tell now; the retried step compares anchors before using the work
        if moved:
            raise _Stop(
                Outcome.ANCHOR_CHANGED,
                f"best task or anchor changed during training ({trained.seconds:.1f} s)",
            )
        if not trained.met_target:
            raise _Stop(
                Outcome.TARGET_MISSED,
                f"reached {percent(trained.train_bps)} training accuracy, target "
                f"{percent(task.min_train_bps)} "
                f"({trained.epochs} epochs, {trained.seconds:.1f} s, stopped by {trained.stopped_by})",
            )
        # Claim exactly what consensus will compute: from the blob, not the in-memory model.
        try:
            blob = encode_model(trained.integer_model)
            model = decode_model(blob)
            check_model_matches_task(model, task.model_spec)
        except ModelFormatError as error:
            raise _Stop(Outcome.BAD_TASK, f"trained model cannot be committed: {error}") from None
        train_bps = evaluate_integer_model(model, fitted_sml, train)
        return _Work(
            head=head,
            task=task,
            anchor=anchor,
            train=train,
            sml=sml,
            model=model,
            blob=blob,
            commitment=commitment_for(blob, self.address, anchor.hash),
            train_bps=train_bps,
            seconds=trained.seconds,
            epochs=trained.epochs,
        )

    def _training_inputs(self, task: Task, train, sml: SML):
        """(training set, SML) to train on: as fetched, or for an encrypted task the
        decrypted relu(S x) of every sample, once the data node served this miner's keys
        for the anchor (miner/encrypted_tasks.py). Waits (DATA_MISSING) until then."""
        if not isinstance(train, EncryptedTrainingSet):
            return train, sml
        assert task.anchor is not None
        cache_key = (task.dataset_digest, task.anchor.hash)
        if self._decrypted is not None and self._decrypted[0] == cache_key:
            return self._decrypted[1]
        try:
            inputs = obtain_training_inputs(
                self.w3, self.account, task, train, sml, self.chain_id, progress=self.config.progress
            )
        except KeysNotServed as error:
            raise _Stop(Outcome.DATA_MISSING, str(error)) from None
        except EncryptedTaskError as error:
            raise _Stop(Outcome.BAD_TASK, str(error)) from None
        self._decrypted = (cache_key, inputs)
        return inputs

    def _anchor_changed(self, task: Task) -> bool:
        """Whether the node's best task or its anchor is no longer ``task``'s: new heads alone
        (idle blocks) change neither."""
        best = self.w3.pole.best_task()
        return best is None or _anchor_key(best) != _anchor_key(task)

    def _abandon_check(self, task: Task) -> Callable[[], bool]:
        """For train_model's between-epoch hook: stop when asked to or when the best task or
        its anchor changed (asking the node at most once per poll interval)."""
        next_check = time.monotonic() + self.config.poll_s

        def should_stop() -> bool:
            nonlocal next_check
            if self._stop.is_set():
                return True
            if time.monotonic() < next_check:
                return False
            next_check = time.monotonic() + self.config.poll_s
            try:
                return self._anchor_changed(task)
            except TRANSIENT_ERRORS:
                return False

        return should_stop

    def _fetch(self, digest: bytes, what: str, decode: Callable[[bytes, bytes], object]):
        """A blob by digest, checked against the digest, decoded, cached."""
        if digest in self._decoded:
            self._decoded.move_to_end(digest)
            return self._decoded[digest]
        if digest in self._bad:
            raise _Stop(Outcome.BAD_TASK, self._bad[digest])
        try:
            data = self.w3.pole.get_blob(digest)
        except Web3RPCError as error:
            reason = f"{what} {short(digest)} not available: {_node_says(error)}"
            raise _Stop(Outcome.DATA_MISSING, reason) from None
        if keccak(data) != digest:  # a node that serves wrong bytes; ask again later
            raise _Stop(Outcome.DATA_MISSING, f"node returned a {what} that does not hash to {short(digest)}")
        try:
            value = decode(data, digest)
        except (DatasetFormatError, ModelSpecError) as error:
            self._bad[digest] = f"{what} {short(digest)} is malformed: {error}"
            raise _Stop(Outcome.BAD_TASK, self._bad[digest]) from None
        self._decoded[digest] = value
        while len(self._decoded) > BLOB_CACHE_ENTRIES:
            self._decoded.popitem(last=False)
        return value

    # -- 5. release -------------------------------------------------------------------

    def _await_release(self, work: _Work) -> tuple[Release, Dataset]:
        """Poll for the poster's release for (task, anchor) and its test set, until the
        deadline (plus a short grace) passes, or the best task or its anchor changes while
        nothing is released for ours. New heads alone only delay; so do node errors."""
        task, anchor = work.task, work.anchor
        give_up_at = task.deadline + self.config.release_grace_s
        release: Optional[Release] = None
        while True:
            if self._stop.is_set():
                raise _Stop(Outcome.STOPPED, "stopped while waiting for the release")
            current = work.head
            try:
                if release is None:
                    raw = self.w3.pole.get_release(task.task_id, anchor.hash)
                    release = None if raw is None else self._check_release(raw, work)
                if release is not None:
                    # Released for our anchor: seal even if a sibling already settled the
                    # task; fork choice keeps the better block.
                    return release, self._test_set(release, work.train)
                current = self.head()
                if self._anchor_changed(task):
                    raise _Stop(
                        Outcome.ANCHOR_CHANGED,
                        f"at block {current.number} ({short(current.hash)}) the best task is "
                        f"no longer task {task.task_id} at anchor {anchor.number}",
                    )
            except TRANSIENT_ERRORS as error:
                # Not there yet (a test set travels separately) or the node hiccupped: the
                # deadline still bounds the wait.
                log.debug("waiting for the release: %s", _describe(error))
            if self.now(current) > give_up_at:
                missing = "release" if release is None else f"test set {short(release.test_set_digest)}"
                raise _Stop(Outcome.DEADLINE_PASSED, f"no {missing} by the deadline {task.deadline}")
            self._stop.wait(self.config.poll_s)

    def _check_release(self, raw: bytes, work: _Work) -> Release:
        """The release, if check_release finds it valid for our task, anchor and commitment."""
        try:
            release = Release.decode(raw)
        except MessageError as error:
            raise _Stop(Outcome.BAD_RELEASE, f"release rejected: {error}") from None
        try:
            check_release(release, work.task, work.anchor.hash, self.chain_id, work.commitment)
        except CommitmentNotAdmitted as error:
            raise _Stop(Outcome.NOT_ADMITTED, str(error)) from None
        except ReleaseRefused as error:
            raise _Stop(Outcome.BAD_RELEASE, str(error)) from None
        return release

    def _test_set(self, release: Release, train: Dataset) -> Dataset:
        """The released test set; a node error while it is not available yet."""
        digest = release.test_set_digest
        data = self.w3.pole.get_blob(digest)
        if keccak(data) != digest:  # the node served wrong bytes: ask again, like _fetch
            raise BadNodeAnswer(f"test set does not hash to {short(digest)}")
        try:
            test = decode_dataset(data)
        except DatasetFormatError as error:
            raise _Stop(Outcome.BAD_RELEASE, f"test set is malformed: {error}") from None
        if test.d != train.d or test.num_classes != train.num_classes:
            raise _Stop(
                Outcome.BAD_RELEASE,
                f"test set has {test.d} features / {test.num_classes} classes, "
                f"training set {train.d} / {train.num_classes}",
            )
        return test

    # -- 6. reveal and seal -----------------------------------------------------------

    def _reveal_and_seal(self, work: _Work, release: Release, test: Dataset) -> HeightResult:
        """Seal on the node's current head (any descendant of the anchor); if the node
        refuses while the head moves (the parent lost to another branch), seal the same
        model again on the new head, a bounded number of times."""
        task, head = work.task, work.head
        test_bps = evaluate_integer_model(work.model, work.sml, test)
        result = partial(
            HeightResult,
            head_number=head.number,
            head_hash=head.hash,
            task_id=task.task_id,
            announced=True,
            commitment=work.commitment,
            train_bps=work.train_bps,
            test_bps=test_bps,
        )
        where = (
            f"{_where(task, head)}: release {short(release.digest)}, train "
            f"{percent(work.train_bps)}, test {percent(test_bps)}"
        )
        attempt = 1
        while True:
            parent = self._seal_parent(task)
            try:
                block_hash = self._seal_on(parent, work, release, test_bps)
            except (Web3RPCError, BadNodeAnswer) as error:
                reason = _node_says(error)
                if attempt < SEAL_ATTEMPTS and self._seal_parent(task) != parent:
                    log.info("%s; head moved while sealing on block %d (%s), sealing again",
                             where, parent.number, reason)
                    attempt += 1
                    continue
                log.warning("%s; node refused: %s", where, reason)
                return result(Outcome.REFUSED, reason=reason)
            self._sealed = _Sealed(work, release, test, parent.hash)
            log.info("%s; sealed block %d (%s)", where, parent.number + 1, short(block_hash))
            return result(Outcome.SEALED, block_hash=block_hash)

    def _seal_parent(self, task: Task) -> Head:
        """The node's head, unless a block there already settled ``task`` (a sibling sealed
        first): then that block's parent, so both siblings meet in fork choice."""
        head = self.head()
        result = self.w3.pole.get_task(task.task_id).result
        if result is None:
            return head
        block = self.w3.eth.get_block(result.block_number - 1)
        return Head(int(block["number"]), bytes(block["hash"]), int(block["timestamp"]))

    def _seal_on(self, parent: Head, work: _Work, release: Release, test_bps: int) -> bytes:
        """Reveal the model, have the node build the block on ``parent``, sign and submit it."""
        revealed = self.w3.pole.reveal_model(work.blob, self.address, work.anchor.hash)
        if revealed != work.commitment:
            raise BadNodeAnswer(f"node computed commitment {short(revealed)}")
        seal = SealAsked(
            parent_hash=parent.hash,
            coinbase=self.address,
            task_id=work.task.task_id,
            commitment=work.commitment,
            train_bps=work.train_bps,
            test_bps=test_bps,
            release_digest=release.digest,
        )
        built = self.w3.pole.build_block(**vars(seal))
        signed = sign_built_block(built, seal, keys.PrivateKey(self.account.key))
        return self.w3.pole.submit_block(signed)

    # -- logging ----------------------------------------------------------------------

    def _note(self, head: Head, task: Optional[Task], result: HeightResult) -> None:
        """One line per outcome per head; a waiting state (no task, overdue, data missing)
        once until it changes, not again on every new idle block."""
        quiet = result.outcome in (Outcome.NO_TASK, Outcome.OVERDUE, Outcome.DATA_MISSING)
        key = (
            (result.outcome, task.task_id if task else None)
            if quiet
            else (head.hash, result.outcome, result.reason)
        )
        if key == self._last_note:
            return
        self._last_note = key
        where = _where(task, head) if task else f"block {head.number} ({short(head.hash)})"
        level = logging.INFO if quiet or result.outcome is Outcome.STOPPED else logging.WARNING
        verb = "" if quiet else "abandoned: "
        if result.outcome in (Outcome.BAD_TASK, Outcome.TARGET_MISSED):
            verb = "skipped: "
        log.log(level, "%s: %s%s", where, verb, result.reason)


def _where(task: Task, head: Head) -> str:
    anchor = "" if task.anchor is None else f", anchor {task.anchor.number} ({short(task.anchor.hash)})"
    return f"task {task.task_id} @ block {head.number}{anchor}"


def _describe(error: BaseException) -> str:
    if isinstance(error, requests.exceptions.ConnectionError):
        return "cannot connect to the node"
    if isinstance(error, requests.exceptions.Timeout):
        return "the node did not answer in time"
    text = _node_says(error)
    return f"{type(error).__name__}: {text if len(text) <= 200 else text[:200] + '…'}"


def _node_says(error: BaseException) -> str:
    """What the node said (web3's own text for a JSON-RPC error is the whole error's repr)."""
    return error_message(error) if isinstance(error, Web3RPCError) else str(error)


def _decode_training_set(data: bytes, digest: bytes) -> Dataset | EncryptedTrainingSet:
    return decode_training_blob(data)


def _decode_spec(data: bytes, digest: bytes) -> ModelSpec:
    return model_spec_from_json(data, require_canonical=True)


def _check_task_data(spec: ModelSpec, train: Dataset) -> None:
    """The task's spec must take an SML output of its training set (clear or encrypted) and
    predict its classes."""
    try:
        check_sml_fits(spec.input_shape, train.d)
    except SMLShapeError as error:
        raise _Stop(Outcome.BAD_TASK, str(error)) from None
    if spec.num_classes != train.num_classes:
        raise _Stop(
            Outcome.BAD_TASK,
            f"model has {spec.num_classes} classes, training set {train.num_classes}",
        )


@dataclass(frozen=True)
class SealAsked:
    """A seal as the miner asks the node to build it (pole_buildBlock's seal object)."""

    parent_hash: bytes
    coinbase: bytes
    task_id: int
    commitment: bytes
    train_bps: int
    test_bps: int
    release_digest: bytes


def sign_built_block(
    built: Mapping[str, bytes], asked: SealAsked, private_key: keys.PrivateKey
) -> bytes:
    """The RLP of the block pole_buildBlock answered, signed, once it is the block asked for.

    The signature is what makes a seal usable (nobody else can re-wrap it), so the miner
    signs only a block on its parent that carries its own seal; the node chose the
    transactions and the timestamp. Raises BadNodeAnswer otherwise.
    """
    try:
        block = rlp.decode(built["block"], sedes=PoLePragueVM.get_block_class())
        sealed = read_seal(block.header)
    except (rlp.exceptions.RLPException, SealError) as error:
        raise BadNodeAnswer(f"the built block does not decode: {error}") from None
    wanted = Seal.pole(asked.train_bps, asked.test_bps, asked.release_digest)
    got = (block.header.parent_hash, sealed.miner, sealed.task_id, sealed.commitment, sealed.seal)
    if got != (asked.parent_hash, asked.coinbase, asked.task_id, asked.commitment, wanted):
        raise BadNodeAnswer(
            f"the built block is not the seal asked for (parent {short(got[0])}, miner "
            f"{short(got[1])}, task {got[2]}, commitment {short(got[3])}, {got[4]})"
        )
    if signing_hash(block.header) != built["signingHash"]:
        raise BadNodeAnswer("the node's signing hash is not the built header's")
    return rlp.encode(block.copy(header=sign_header(block.header, private_key)))

