"""The model checks of a PoLe seal: the ``SealVerifier`` that vm_hooks' consensus calls.

By the time this runs, consensus has checked the seal's structure, the score, that the
block's task is the best open task in the parent state and not overdue, and found the task's
anchor on the block's branch; the SML seed, the commitment and the release are bound to
that anchor. What is left needs the off-chain data: the release the block answers, the revealed model, the training and test sets. The
checks run in DESIGN.md's order and each failure is a ``SealError`` subclass naming the rule
and the values.

Only the decoders' own errors (ModelFormatError, DatasetFormatError, MessageError) and the
evaluator's ``IncompatibleModelError`` (the model does not fit the task's data, or costs
more than the evaluation limit) are verdicts on the block. Anything else the evaluation
raises is a bug in this node and propagates unchanged: the block is then neither accepted
nor remembered as invalid, so a bug cannot split this node from the others.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Protocol

from eth.abc import BlockHeaderAPI
from eth_utils import keccak

from miner.datasets import Dataset, DatasetFormatError, decode_dataset
from miner.encrypted_tasks import TrainingSetUnavailable, resolve_training_set
from miner.integer_eval import IncompatibleModelError, check_compatible, evaluate_integer_model
from miner.integer_model import ModelFormatError, check_model_matches_task, decode_model
from miner.messages import Release, commitment_for
from miner.release_rules import ReleaseRefused, check_release
from miner.sml import SMLShapeError, model_sml
from vm_hooks.params import CHAIN_ID
from vm_hooks.registry_calls import Task
from vm_hooks.seal import SealedHeader
from vm_hooks.seal_errors import (
    AccuracyMismatchError,
    DataUnavailableError,
    MinimumAccuracyError,
    ModelRejectedError,
    ReleaseError,
)


class SealData(Protocol):
    """Where a node keeps what blocks only refer to by hash."""

    def release_for_prefix(self, prefix: bytes) -> Optional[Release]: ...

    def model_for(self, commitment: bytes) -> Optional[bytes]: ...

    def blob(self, digest: bytes) -> Optional[bytes]: ...


EVALUATION_CACHE_SIZE = 256


class ModelSealVerifier:
    def __init__(self, data: SealData) -> None:
        self._data = data
        self._evaluated: OrderedDict[tuple, tuple[int, int]] = OrderedDict()

    def verify(
        self, header: BlockHeaderAPI, sealed: SealedHeader, task: Task, anchor_hash: bytes
    ) -> None:
        commitment = sealed.commitment
        release = self._release(sealed)
        try:
            check_release(release, task, anchor_hash, CHAIN_ID, commitment)
        except ReleaseRefused as error:
            raise ReleaseError(str(error)) from None
        model_blob = self._data.model_for(commitment)
        if model_blob is None:
            raise DataUnavailableError(f"model for commitment {commitment.hex()} is not available")
        if commitment_for(model_blob, sealed.miner, anchor_hash) != commitment:
            raise ModelRejectedError(
                f"model blob does not hash to commitment {commitment.hex()} with this "
                f"coinbase and the task's anchor {anchor_hash.hex()}"
            )
        train_bps, test_bps = self._accuracies(
            model_blob, task, sealed.miner, anchor_hash, release.test_set_digest
        )
        if train_bps < task.min_train_bps:
            raise MinimumAccuracyError(
                f"training accuracy {train_bps} bps is below the task's minimum "
                f"{task.min_train_bps} bps"
            )
        if train_bps != sealed.train_bps:
            raise AccuracyMismatchError(
                f"claimed training accuracy {sealed.train_bps} bps, evaluated {train_bps} bps"
            )
        if test_bps != sealed.test_bps:
            raise AccuracyMismatchError(
                f"claimed test accuracy {sealed.test_bps} bps, evaluated {test_bps} bps"
            )

    def _accuracies(
        self, model_blob: bytes, task: Task, miner: bytes, anchor_hash: bytes, test_digest: bytes
    ) -> tuple[int, int]:
        """(train bps, test bps) of the model under this block's SML, computed once.

        Every variant of a block (other transactions, timestamp, claims, or another parent
        below the same anchor) reuses the same evaluation, so re-sending one admitted model
        costs a node hashing, not training-set passes. Only completed evaluations are
        remembered.
        """
        train_digest = task.dataset_digest
        key = (keccak(model_blob), task.model_spec, miner, anchor_hash, train_digest, test_digest)
        if key not in self._evaluated:
            try:
                model = decode_model(model_blob)
                check_model_matches_task(model, task.model_spec)
            except ModelFormatError as error:
                raise ModelRejectedError(f"model rejected: {error}") from None
            train_set = self._training_set(train_digest)
            test_set = self._dataset(test_digest, "test set")
            try:
                sml = model_sml(anchor_hash, miner, model.spec.input_shape, train_set.d)
                check_compatible(model, sml, train_set.d)
                accuracies = (
                    evaluate_integer_model(model, sml, train_set),
                    evaluate_integer_model(model, sml, test_set),
                )
            except (IncompatibleModelError, SMLShapeError) as error:
                raise ModelRejectedError(
                    f"model cannot be evaluated on the task's data: {error}"
                ) from None
            self._evaluated[key] = accuracies
            while len(self._evaluated) > EVALUATION_CACHE_SIZE:
                self._evaluated.popitem(last=False)
        return self._evaluated[key]

    def _release(self, sealed: SealedHeader) -> Release:
        release = self._data.release_for_prefix(sealed.release_digest_prefix)
        if release is None:
            raise DataUnavailableError(
                f"release {sealed.release_digest_prefix.hex()}... is not available"
            )
        return release

    def _training_set(self, digest: bytes) -> Dataset:
        """The clear training set; for an encrypted task the one its container commits to,
        revealed with the release (miner/encrypted_tasks.py)."""
        try:
            return resolve_training_set(digest, self._data.blob)
        except TrainingSetUnavailable as error:
            raise DataUnavailableError(str(error)) from None
        except DatasetFormatError as error:
            raise DataUnavailableError(f"training set {digest.hex()} is malformed: {error}") from None

    def _dataset(self, digest: bytes, what: str) -> Dataset:
        blob = self._data.blob(digest)
        if blob is None:
            raise DataUnavailableError(f"{what} {digest.hex()} is not available")
        try:
            return decode_dataset(blob)
        except DatasetFormatError as error:
            raise DataUnavailableError(f"{what} {digest.hex()} is malformed: {error}") from None
