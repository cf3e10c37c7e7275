"""Model delivery: fetch a settled task's winning model, check it, export it for torch.

What the data node paid for is the integer model committed in the winning block. Delivery:

    1. the task is settled; its on-chain result names the winner, the model commitment and
       the block; the task's anchor block (docs/PROTOCOL.md, "Task anchor") seeds the SML
    2. fetch the model blob by its commitment and CHECK
       keccak(blob || winner || anchor_hash) == the on-chain commitment (refuse otherwise),
       and that its embedded architecture is the task's model spec
    3. rebuild the winner's SML, model_sml(anchor_hash, winner, spec.input_shape, d)
    4. read the task's training set by its on-chain digest: its feature count, image shape and
       quantisation (miner/datasets.py) are the delivered module's input contract
    5. write a torch module that predicts on RAW features, as the data node's source held them
       (sklearn's load_digits() values 0..16, iris in centimetres, ...): it applies the data
       node's quantisation, then runs the consensus evaluator's own forward pass
       (`miner.integer_eval.integer_forward`) on its buffers. There is no second copy of the
       integer arithmetic, so its predictions are `evaluate_integer_model`'s by construction.
    6. evaluate the module on the release's test set and check it reproduces the claimed test
       accuracy. If the test set cannot be had, delivery is refused, unless the caller allows
       an unchecked delivery: then meta.json says "test_accuracy_checked": false and why, and
       `Delivery.warning` says so in words (the CLI prints it).

Output directory:

    model.safetensors   the module's state dict (safetensors; spec in its metadata)
    model.pt            the same state dict (torch.save)
    model.plmd          the committed model blob itself (re-verifiable by anyone)
    meta.json           task id, commitment, winner, parent, accuracies, architecture, and the
                        input contract ("input": feature count, dtype, accepted shapes,
                        quantisation)

`load_delivered_model(out_dir)` rebuilds the module from meta.json and the state dict.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from eth_utils import encode_hex, keccak, to_checksum_address
from torch import nn
from web3 import Web3
from web3.exceptions import Web3RPCError

from miner.datasets import (
    MAX_FEATURE_VALUE,
    Dataset,
    DatasetFormatError,
    FeatureQuantization,
    decode_dataset,
)
from miner.encrypted_tasks import TrainingSetUnavailable, resolve_training_set
from miner.integer_eval import accuracy_bps, argmax_lowest, evaluate_integer_model, integer_forward
from miner.integer_model import (
    IntegerConv2d,
    IntegerDense,
    IntegerModel,
    ModelFormatError,
    check_model_matches_task,
    decode_model,
    encode_model,
)
from miner.messages import MessageError, Release, commitment_for
from miner.model_spec import (
    Conv2d,
    Dense,
    ModelSpec,
    layer_shapes,
    model_spec_canonical_bytes,
    model_spec_digest,
    model_spec_from_json,
    model_spec_to_obj,
)
from miner.pole_module import attach_pole, error_message
from miner.sml import SML, SMLShapeError, check_sml_fits, model_sml, sml_of_matrix, sml_seed
from pole_chain.clients.data_node import settled_anchor
from vm_hooks.task import Task, TaskResult, TaskStatus

FORMAT = "pole-delivered-model/2"
META_FILE = "meta.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "model.pt"
BLOB_FILE = "model.plmd"
_WEIGHT_DTYPES = {1: torch.int8, 2: torch.int16}


class ModelDeliveryError(RuntimeError):
    """The model cannot be delivered (task not settled, blob missing or not the committed one,
    test accuracy not checkable and unchecked delivery not allowed)."""


# --------------------------------------------------------------------------------------
# The input contract: raw features as the data node's source held them
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class InputContract:
    """What the delivered module takes: `features` raw values per sample (flat, or shaped
    as the dataset's image), turned into the dataset's 0..255 integers by `quantization`
    (None: the raw values are those integers already)."""

    features: int
    image_shape: tuple[int, int, int] | None = None
    quantization: FeatureQuantization | None = None

    @classmethod
    def of_dataset(cls, dataset: Dataset) -> "InputContract":
        return cls(dataset.d, dataset.image_shape, dataset.quantization)

    @property
    def sample_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes the module accepts: (d,), and (c, h, w) and (h, w) for images."""
        shapes: list[tuple[int, ...]] = [(self.features,)]
        if self.image_shape is not None:
            shapes.append(self.image_shape)
            if self.image_shape[0] == 1:
                shapes.append(self.image_shape[1:])
        return shapes

    def to_obj(self) -> dict:
        quantized = self.quantization is not None
        return {
            "features": self.features,
            "shapes": [["n", *shape] for shape in self.sample_shapes],
            "image_shape": list(self.image_shape) if self.image_shape is not None else None,
            "dtype": "real numbers (any int or float dtype)" if quantized else "integers 0..255",
            "quantization": self.quantization.to_obj() if quantized else None,
            "description": "raw features as the data node's source dataset held them; the "
            "module applies the quantisation itself"
            if quantized
            else "the dataset's own integer features 0..255 (it had no quantisation)",
        }

    @classmethod
    def from_obj(cls, obj: dict) -> "InputContract":
        try:
            image_shape = obj["image_shape"]
            quantization = obj["quantization"]
            return cls(
                int(obj["features"]),
                tuple(int(v) for v in image_shape) if image_shape is not None else None,
                FeatureQuantization.from_obj(quantization) if quantization is not None else None,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelDeliveryError(f"{META_FILE}: malformed input contract ({error})") from None

    def flatten(self, raw: Any) -> np.ndarray:
        """Raw input of one of `sample_shapes` (numpy, torch or nested lists) -> (n, d)."""
        x = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
        if x.ndim < 1 or tuple(x.shape[1:]) not in self.sample_shapes:
            accepted = " or ".join(str(("n", *shape)) for shape in self.sample_shapes)
            raise ValueError(f"expected raw features of shape {accepted}, got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.features)


def check_integer_features(x: np.ndarray) -> np.ndarray:
    """(n, d) values that must be integers 0..255 -> int64, or ValueError."""
    if x.dtype.kind == "f":
        if not np.all(x == np.round(x)):
            raise ValueError("features must be integers 0..255 (this dataset had no quantisation)")
    elif x.dtype.kind not in "iu":
        raise ValueError(f"features must be integers 0..255, got dtype {x.dtype}")
    if x.size and (x.min() < 0 or x.max() > MAX_FEATURE_VALUE):
        raise ValueError(f"features must be in 0..{MAX_FEATURE_VALUE}")
    return x.astype(np.int64)


# --------------------------------------------------------------------------------------
# The torch module: quantisation + SML + integer network, run by the consensus code
# --------------------------------------------------------------------------------------


class IntegerParameters(nn.Module):
    """One dense/conv2d layer's committed integers as buffers: weight (int8/int16, the
    layer's shape), bias int32, shift (a 0-d int64)."""

    def __init__(self, weight_shape: tuple[int, ...], weight_dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(weight_shape, dtype=weight_dtype))
        self.register_buffer("bias", torch.zeros(weight_shape[0], dtype=torch.int32))
        self.register_buffer("shift", torch.zeros((), dtype=torch.int64))


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


class DeliveredModel(nn.Module):
    """The delivered predictor: raw features (see `contract`) -> logits (n, classes) int64.

    Buffers: `input_low`/`input_span` (the data node's quantisation, if it had one), the
    winner's SML matrix, and per dense/conv2d layer of the task's spec its committed
    integers. `forward` quantises the raw input and calls the consensus forward pass on
    them; `predict` gives class indices (ties to the lowest class, as consensus).
    """

    def __init__(
        self, spec: ModelSpec, contract: InputContract, weight_widths: tuple[int, ...] = ()
    ) -> None:
        super().__init__()
        try:
            check_sml_fits(spec.input_shape, contract.features)
        except SMLShapeError as error:
            raise ModelDeliveryError(f"model input does not fit its features: {error}") from None
        self.spec, self.contract = spec, contract
        if contract.quantization is not None:
            self.register_buffer("input_low", torch.from_numpy(np.array(contract.quantization.low)))
            self.register_buffer("input_span", torch.from_numpy(np.array(contract.quantization.span)))
        self.register_buffer(
            "sml_matrix", torch.zeros(spec.input_dim, contract.features, dtype=torch.int8)
        )
        widths = iter(weight_widths)
        shapes = layer_shapes(spec)
        params = {}
        for i, layer in enumerate(spec.layers):
            if isinstance(layer, Dense):
                weight_shape: tuple[int, ...] = (layer.units, shapes[i][0])
            elif isinstance(layer, Conv2d):
                weight_shape = (layer.channels, shapes[i][0], layer.kernel, layer.kernel)
            else:
                continue
            params[str(i)] = IntegerParameters(weight_shape, _WEIGHT_DTYPES[next(widths, 1)])
        self.params = nn.ModuleDict(params)

    @classmethod
    def from_integer_model(
        cls, model: IntegerModel, sml: SML, contract: InputContract
    ) -> "DeliveredModel":
        if sml.out_dim != model.spec.input_dim:
            raise ModelDeliveryError(
                f"SML gives {sml.out_dim} values, the model takes {model.spec.input_dim}"
            )
        module = cls(model.spec, contract, model.weight_widths)
        with torch.no_grad():
            module.sml_matrix.copy_(torch.from_numpy(np.array(sml.matrix, dtype=np.int8)))
            for i, layer in enumerate(model.layers):
                if isinstance(layer, (IntegerDense, IntegerConv2d)):
                    target = module.params[str(i)]
                    target.weight.copy_(torch.from_numpy(np.array(layer.weight)))
                    target.bias.copy_(torch.from_numpy(np.array(layer.bias, dtype=np.int32)))
                    target.shift.fill_(layer.shift)
        return module

    def integer_model(self) -> IntegerModel:
        """The committed IntegerModel, read back from the buffers (checked against the spec)."""
        layers = []
        for i, layer in enumerate(self.spec.layers):
            if isinstance(layer, (Dense, Conv2d)):
                p = self.params[str(i)]
                weight, bias, shift = _array(p.weight), _array(p.bias), int(p.shift)
                layers.append(
                    IntegerDense(weight, bias, shift)
                    if isinstance(layer, Dense)
                    else IntegerConv2d(weight, bias, shift, layer.padding)
                )
            else:
                layers.append(layer)
        return IntegerModel(self.spec, tuple(layers))

    def sml(self) -> SML:
        return sml_of_matrix(_array(self.sml_matrix), self.spec.input_shape, self.contract.features)

    def quantize(self, raw: Any) -> np.ndarray:
        """Raw features -> the dataset's integer features (n, d), as the data node made them."""
        x = self.contract.flatten(raw)
        if self.contract.quantization is None:
            return check_integer_features(x)
        quantization = FeatureQuantization(
            _array(self.input_low), _array(self.input_span), self.contract.quantization.rounding
        )
        return quantization.apply(x)

    def features_logits(self, features: Any) -> np.ndarray:
        """Logits for features already in the dataset's 0..255 form (a Dataset's features)."""
        x = check_integer_features(np.asarray(features))
        return integer_forward(self.integer_model(), self.sml(), x)

    def forward(self, raw: Any) -> torch.Tensor:
        return torch.from_numpy(self.features_logits(self.quantize(raw)))

    def predict(self, raw: Any) -> np.ndarray:
        """Class indices for raw features, ties to the lowest class."""
        return argmax_lowest(self.features_logits(self.quantize(raw)))

    def accuracy_bps(self, raw: Any, labels: Any) -> int:
        """correct * 10000 // n on raw features, as the consensus evaluator counts."""
        return accuracy_bps(self.predict(raw), np.asarray(labels))

    def dataset_accuracy_bps(self, dataset: Dataset) -> int:
        """The same on a Dataset as the chain holds it (features already quantised)."""
        return accuracy_bps(argmax_lowest(self.features_logits(dataset.features)), dataset.labels)


# --------------------------------------------------------------------------------------
# Export and load
# --------------------------------------------------------------------------------------


def export_model(
    model: IntegerModel, sml: SML, contract: InputContract, out_dir: str | Path, meta: dict
) -> DeliveredModel:
    """Write model.safetensors, model.pt, model.plmd and meta.json; returns the module."""
    from safetensors.torch import save_file

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    module = DeliveredModel.from_integer_model(model, sml, contract)
    state = {name: tensor.contiguous() for name, tensor in module.state_dict().items()}
    spec_json = model_spec_canonical_bytes(model.spec).decode("ascii")
    full_meta = {
        "format": FORMAT,
        **meta,
        "architecture": model_spec_to_obj(model.spec),
        "model_spec": encode_hex(model_spec_digest(model.spec)),
        "weight_widths": list(model.weight_widths),
        "input": contract.to_obj(),
        "sml": {"shape": list(sml.matrix.shape), "matrix_digest": encode_hex(sml.matrix_digest())},
        "files": [SAFETENSORS_FILE, TORCH_FILE, BLOB_FILE, META_FILE],
    }
    save_file(state, str(out / SAFETENSORS_FILE), metadata={"format": FORMAT, "spec": spec_json})
    torch.save(state, out / TORCH_FILE)
    (out / BLOB_FILE).write_bytes(encode_model(model))
    (out / META_FILE).write_text(json.dumps(full_meta, indent=2, sort_keys=True) + "\n")
    return module


def load_delivered_model(out_dir: str | Path, *, prefer: str = "safetensors") -> DeliveredModel:
    """The module `fetch_model` wrote (from model.safetensors, or model.pt with prefer="pt")."""
    out = Path(out_dir).expanduser()
    try:
        meta = json.loads((out / META_FILE).read_text())
    except FileNotFoundError:
        raise ModelDeliveryError(f"{out} holds no delivered model ({META_FILE} missing)") from None
    if meta.get("format") != FORMAT:
        raise ModelDeliveryError(f"{out / META_FILE}: unknown format {meta.get('format')!r}")
    spec = model_spec_from_json(json.dumps(meta["architecture"]))
    contract = InputContract.from_obj(meta["input"])
    module = DeliveredModel(spec, contract, tuple(meta.get("weight_widths", ())))
    if prefer == "pt":
        state = torch.load(out / TORCH_FILE, weights_only=True)
    else:
        from safetensors.torch import load_file

        state = load_file(str(out / SAFETENSORS_FILE))
    module.load_state_dict(state, strict=True)
    module.eval()
    return module


# --------------------------------------------------------------------------------------
# Fetch from the chain
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Delivery:
    out_dir: Path
    meta: dict
    module: DeliveredModel

    @property
    def warning(self) -> Optional[str]:
        """None if the claimed test accuracy was re-checked; otherwise what a person must read."""
        if self.meta["test_accuracy_checked"]:
            return None
        return (
            f"WARNING: the claimed test accuracy {self.meta['test_bps'] / 100:.2f} % was NOT "
            f"checked: {self.meta['test_accuracy_unchecked_reason']}"
        )


def fetch_model(
    w3: Web3,
    task_id: int,
    out_dir: str | Path,
    *,
    allow_unchecked: bool = False,
) -> Delivery:
    """Fetch, check and export the winning model of settled task `task_id` into `out_dir`.

    Refuses (ModelDeliveryError) when the claimed test accuracy cannot be re-checked, unless
    `allow_unchecked`; then meta.json records "test_accuracy_checked": false and the reason.
    """
    attach_pole(w3)
    task, result = _settled_task(w3, task_id)
    block = w3.eth.get_block(result.block_number)
    anchor_hash = settled_anchor(w3, result).hash  # the task's anchor (docs/PROTOCOL.md)
    if bytes(block["mixHash"]) != result.model_commitment:
        raise ModelDeliveryError(
            f"block #{result.block_number} does not carry task {task_id}'s model commitment"
        )
    blob, model = _committed_model(w3, task, result, anchor_hash)
    contract = InputContract.of_dataset(_training_set(w3, task))
    try:
        sml = model_sml(anchor_hash, result.winner, model.spec.input_shape, contract.features)
    except SMLShapeError as error:
        raise ModelDeliveryError(f"task {task_id}'s model does not fit its training set: {error}") from None
    test_set, unchecked_reason = _released_test_set(
        w3, task_id, anchor_hash, result.release_digest_prefix
    )
    if test_set is None and not allow_unchecked:
        raise ModelDeliveryError(
            f"cannot check the claimed test accuracy of task {task_id}: {unchecked_reason}; "
            "refusing to deliver an unchecked model (`pole model get --allow-unchecked` writes it "
            "anyway, marked unchecked)"
        )
    module = DeliveredModel.from_integer_model(model, sml, contract)
    checked = None if test_set is None else _check_test_accuracy(module, model, sml, test_set, result)
    meta = {
        "task_id": task_id,
        "chain_id": w3.eth.chain_id,
        "winner": to_checksum_address(result.winner),
        "model_commitment": encode_hex(result.model_commitment),
        "model_blob_digest": encode_hex(keccak(blob)),
        "block_number": result.block_number,
        "block_hash": encode_hex(bytes(block["hash"])),
        "anchor_hash": encode_hex(anchor_hash),
        "sml_seed": encode_hex(sml_seed(anchor_hash, result.winner)),
        "train_bps": result.train_bps,
        "test_bps": result.test_bps,
        "reward_wei": str(task.reward),
        "test_accuracy_checked": checked is not None,
        "checked_test_bps": checked,
        "test_accuracy_unchecked_reason": unchecked_reason,
    }
    module = export_model(model, sml, contract, out_dir, meta)
    return Delivery(Path(out_dir).expanduser(), meta, module)


def _settled_task(w3: Web3, task_id: int) -> tuple[Task, TaskResult]:
    from pole_chain.clients.data_node import DataNodeError, get_task

    try:
        task = get_task(w3, task_id)
    except DataNodeError as error:
        raise ModelDeliveryError(str(error)) from None
    if task.status != TaskStatus.SETTLED or task.result is None:
        raise ModelDeliveryError(
            f"task {task_id} is {task.status.label}, not settled: there is no winning model"
        )
    return task, task.result


def _committed_model(
    w3: Web3, task: Task, result: TaskResult, anchor_hash: bytes
) -> tuple[bytes, IntegerModel]:
    blob = w3.pole.get_model(result.model_commitment)
    if blob is None:
        raise ModelDeliveryError(
            f"the node has no model for commitment {encode_hex(result.model_commitment)}"
        )
    # The check that makes delivery trustless: these are the bytes the block committed to.
    if commitment_for(blob, result.winner, anchor_hash) != result.model_commitment:
        raise ModelDeliveryError(
            "the model blob the node served does not hash to the on-chain commitment: refused"
        )
    try:
        model = decode_model(blob)
        check_model_matches_task(model, task.model_spec)
    except ModelFormatError as error:
        raise ModelDeliveryError(f"committed model rejected: {error}") from None
    return blob, model


def _training_set(w3: Web3, task: Task) -> Dataset:
    """The task's clear training set by its on-chain digest (for an encrypted task, the clear
    set it commits to, public since the release): where the input contract comes from."""
    digest = encode_hex(task.dataset_digest)
    try:
        return resolve_training_set(task.dataset_digest, lambda d: _checked_blob(w3, d))
    except TrainingSetUnavailable as error:
        raise ModelDeliveryError(
            f"the node does not serve the task's training set ({error}): without it the "
            "model's input contract (the data node's quantisation) is unknown"
        ) from None
    except DatasetFormatError as error:
        raise ModelDeliveryError(f"the task's training set {digest} is malformed: {error}") from None


def _checked_blob(w3: Web3, digest: bytes) -> Optional[bytes]:
    """The node's blob for `digest` (None when it has none), refused unless it hashes to it."""
    try:
        blob = w3.pole.get_blob(digest)
    except Web3RPCError:
        return None
    if keccak(blob) != digest:
        raise ModelDeliveryError(f"the node served a blob that does not hash to {encode_hex(digest)}")
    return blob


def _check_test_accuracy(
    module: DeliveredModel, model: IntegerModel, sml: SML, test_set: Dataset, result: TaskResult
) -> int:
    """The delivered module must reproduce the consensus evaluation it was paid for."""
    checked = module.dataset_accuracy_bps(test_set)
    consensus = evaluate_integer_model(model, sml, test_set)
    if checked != result.test_bps or consensus != result.test_bps:
        raise ModelDeliveryError(
            f"claimed test accuracy {result.test_bps} bps, but the model scores {consensus} "
            f"bps (exported module: {checked} bps) on the released test set"
        )
    return checked


def _released_test_set(
    w3: Web3, task_id: int, anchor_hash: bytes, digest_prefix: bytes
) -> tuple[Optional[Dataset], Optional[str]]:
    """(the test set the winning block was evaluated on, None) from the release for (task,
    parent) whose digest the block's seal (and the result) carries; or (None, why not)."""
    try:
        raw = w3.pole.get_release(task_id, anchor_hash)
        if raw is None:
            return None, (
                f"the node has no release for task {task_id} at parent {encode_hex(anchor_hash)}"
            )
        release = Release.decode(raw)
        if release.digest[: len(digest_prefix)] != digest_prefix:
            return None, "the release the node serves is not the one the winning block answered"
        blob = w3.pole.get_blob(release.test_set_digest)
    except Web3RPCError as error:
        return None, f"the node did not serve the released test set ({error_message(error)})"
    except MessageError as error:
        return None, f"the node served a malformed release ({error})"
    if keccak(blob) != release.test_set_digest:
        return None, "the test set the node served does not hash to the release's digest"
    try:
        return decode_dataset(blob), None
    except DatasetFormatError as error:
        return None, f"the released test set is malformed ({error})"
