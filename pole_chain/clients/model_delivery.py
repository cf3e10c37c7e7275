"""Model delivery: fetch a settled task's winning model, check it, export it for torch.

What the data node paid for is the integer model committed in the winning block. Delivery:

    1. the task is settled; its on-chain result names the winner, the model commitment and
       the block; the block's parent hash is the SML's seed material
    2. fetch the model blob by its commitment and CHECK
       keccak(blob || winner || parent_hash) == the on-chain commitment (refuse otherwise),
       and that its embedded architecture is the task's model spec
    3. rebuild the winner's SML, sml_for(parent_hash, winner, d)
    4. write a torch module that predicts on RAW inputs (features 0..255, as the dataset
       quantisation produces them): the SML matrix as a fixed first layer, then the integer
       network. Its forward is int64 arithmetic, the consensus evaluator's own operations
       (docs/ML.md), so its predictions equal `evaluate_integer_model`'s exactly.
    5. if the release's test set is available, evaluate the exported module on it and check
       it reproduces the claimed test accuracy.

Output directory:

    model.safetensors   the module's state dict (safetensors; spec in its metadata)
    model.pt            the same state dict (torch.save)
    model.plmd          the committed model blob itself (re-verifiable by anyone)
    meta.json           task id, commitment, winner, parent, accuracies, architecture

`load_delivered_model(out_dir)` rebuilds the module from meta.json and the state dict.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from eth_utils import keccak, to_checksum_address
from torch import nn
from web3 import Web3

from miner.datasets import Dataset, DatasetFormatError, decode_dataset, encode_dataset
from miner.integer_eval import ACTIVATION_MAX, ACTIVATION_MIN, evaluate_integer_model
from miner.integer_model import (
    IntegerConv2d,
    IntegerDense,
    IntegerModel,
    ModelFormatError,
    check_model_matches_task,
    decode_model,
)
from miner.messages import Release, commitment_for
from miner.model_spec import (
    Conv2d,
    Dense,
    Flatten,
    MaxPool2d,
    ModelSpec,
    ReLU,
    layer_shapes,
    model_spec_canonical_bytes,
    model_spec_digest,
    model_spec_from_json,
    model_spec_to_obj,
)
from miner.sml import SML, SML_EXPANSION, sml_for, sml_seed
from miner.node_client import NodeError, PoLeClient

FORMAT = "pole-delivered-model/1"
META_FILE = "meta.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "model.pt"
BLOB_FILE = "model.plmd"
MAX_FEATURE_VALUE = 255


class ModelDeliveryError(RuntimeError):
    """The model cannot be delivered (task not settled, blob missing or not the committed one)."""


# --------------------------------------------------------------------------------------
# The torch module: SML + integer network, int64 arithmetic
# --------------------------------------------------------------------------------------


def _round_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(x + 2^(s-1)) >> s, arithmetic: integer_eval.round_shift in torch int64."""
    s = int(shift)
    if s == 0:
        return x
    return (x + (1 << (s - 1))) >> s


def _requantize(acc: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    return torch.clamp(_round_shift(acc, shift), ACTIVATION_MIN, ACTIVATION_MAX)


class SecureMappingLayer(nn.Module):
    """relu(S @ x): the winner's SML, fixed. matrix int8 (2d, d)."""

    def __init__(self, out_dim: int, input_dim: int) -> None:
        super().__init__()
        self.register_buffer("matrix", torch.zeros(out_dim, input_dim, dtype=torch.int8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, d) int64 -> (n, 2d) int64
        return torch.clamp(x @ self.matrix.to(torch.int64).T, min=0)


class IntegerDenseLayer(nn.Module):
    """saturate(round_shift(x @ W.T + b, shift)); W int8/int16 (units, fan_in), b int32."""

    def __init__(self, units: int, fan_in: int, weight_dtype: torch.dtype = torch.int8) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(units, fan_in, dtype=weight_dtype))
        self.register_buffer("bias", torch.zeros(units, dtype=torch.int32))
        self.register_buffer("shift", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, fan_in) -> (n, units)
        acc = x @ self.weight.to(torch.int64).T + self.bias.to(torch.int64)
        return _requantize(acc, self.shift)


class IntegerConv2dLayer(nn.Module):
    """The same over im2col patches; stride 1, zero padding k//2 for "same"."""

    def __init__(
        self, channels: int, in_channels: int, kernel: int, padding: str,
        weight_dtype: torch.dtype = torch.int8,
    ) -> None:
        super().__init__()
        self.padding = padding
        self.register_buffer(
            "weight", torch.zeros(channels, in_channels, kernel, kernel, dtype=weight_dtype)
        )
        self.register_buffer("bias", torch.zeros(channels, dtype=torch.int32))
        self.register_buffer("shift", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, c, h, w) -> (n, o, h', w')
        o, c, k, _ = self.weight.shape
        if self.padding == "same":
            p = k // 2
            x = nn.functional.pad(x, (p, p, p, p))
        n, out_h, out_w = x.shape[0], x.shape[2] - k + 1, x.shape[3] - k + 1
        # patches[n, c*k*k, out_h*out_w], ordered (c, dy, dx) like the weight's reshape
        patches = torch.stack(
            [x[:, :, dy : dy + out_h, dx : dx + out_w] for dy in range(k) for dx in range(k)],
            dim=2,
        ).reshape(n, c * k * k, out_h * out_w)
        acc = self.weight.to(torch.int64).reshape(o, c * k * k) @ patches
        acc = acc + self.bias.to(torch.int64)[None, :, None]
        return _requantize(acc, self.shift).reshape(n, o, out_h, out_w)


class IntegerReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=0)


class IntegerMaxPool2d(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, c, h, w) -> (n, c, h//s, w//s)
        n, c, h, w = x.shape
        s, oh, ow = self.size, h // self.size, w // self.size
        x = x[:, :, : oh * s, : ow * s].reshape(n, c, oh, s, ow, s)
        return torch.amax(x, dim=(3, 5))


class IntegerFlatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # channel-major, like torch
        return x.reshape(x.shape[0], -1)


class DeliveredModel(nn.Module):
    """The delivered predictor: raw features (n, d) in 0..255 -> logits (n, classes) int64.

    Layer 0 is the winner's SML, then one module per layer of the task's model spec, with
    the committed integer weights as buffers. `predict` gives class indices (ties to the
    lowest class, as the consensus evaluator).
    """

    def __init__(self, spec: ModelSpec, weight_widths: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if spec.input_dim % SML_EXPANSION:
            raise ModelDeliveryError(f"model input {spec.input_dim} is not an SML output size")
        self.spec = spec
        self.input_dim = spec.input_dim // SML_EXPANSION
        self.sml = SecureMappingLayer(spec.input_dim, self.input_dim)
        dtypes = iter([{1: torch.int8, 2: torch.int16}[w] for w in (weight_widths or ())])
        shapes = layer_shapes(spec)
        layers: list[nn.Module] = []
        for layer, shape in zip(spec.layers, shapes):
            if isinstance(layer, Dense):
                layers.append(IntegerDenseLayer(layer.units, shape[0], next(dtypes, torch.int8)))
            elif isinstance(layer, Conv2d):
                layers.append(
                    IntegerConv2dLayer(
                        layer.channels, shape[0], layer.kernel, layer.padding,
                        next(dtypes, torch.int8),
                    )
                )
            elif isinstance(layer, ReLU):
                layers.append(IntegerReLU())
            elif isinstance(layer, MaxPool2d):
                layers.append(IntegerMaxPool2d(layer.size))
            elif isinstance(layer, Flatten):
                layers.append(IntegerFlatten())
            else:
                raise ModelDeliveryError(f"unknown layer {layer!r}")
        self.layers = nn.ModuleList(layers)

    @classmethod
    def from_integer_model(cls, model: IntegerModel, sml: SML) -> "DeliveredModel":
        if sml.out_dim != model.spec.input_dim:
            raise ModelDeliveryError(
                f"SML gives {sml.out_dim} values, the model takes {model.spec.input_dim}"
            )
        module = cls(model.spec, model.weight_widths)
        with torch.no_grad():
            module.sml.matrix.copy_(torch.from_numpy(np.array(sml.matrix, dtype=np.int8)))
            for target, layer in zip(module.layers, model.layers):
                if isinstance(layer, (IntegerDense, IntegerConv2d)):
                    target.weight.copy_(torch.from_numpy(np.array(layer.weight)))
                    target.bias.copy_(torch.from_numpy(np.array(layer.bias, dtype=np.int32)))
                    target.shift.fill_(layer.shift)
        return module

    @staticmethod
    def raw_input(features: Any) -> torch.Tensor:
        """Raw features (n, d) as int64, checked to be integers 0..255."""
        x = features if isinstance(features, torch.Tensor) else torch.from_numpy(np.array(features))
        if x.is_floating_point():
            if not bool(torch.all(x == torch.round(x))):
                raise ValueError("raw features must be integers 0..255 (quantise the data first)")
        elif x.dtype == torch.bool or x.is_complex():
            raise ValueError(f"raw features must be integers 0..255, got {x.dtype}")
        x = x.to(torch.int64)
        if x.numel() and (int(x.min()) < 0 or int(x.max()) > MAX_FEATURE_VALUE):
            raise ValueError("raw features must be in 0..255 (quantise the data first)")
        return x

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.raw_input(features)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected features of shape (n, {self.input_dim}), got {tuple(x.shape)}")
        x = self.sml(x).reshape((x.shape[0],) + tuple(self.spec.input_shape))
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.no_grad()
    def predict(self, features: Any) -> np.ndarray:
        """Class indices for raw features (n, d), ties to the lowest class."""
        return torch.argmax(self(features), dim=1).numpy()

    @torch.no_grad()
    def accuracy_bps(self, dataset: Dataset) -> int:
        """correct * 10000 // n, as the consensus evaluator counts."""
        correct = int(np.count_nonzero(self.predict(dataset.features) == dataset.labels.astype(np.int64)))
        return correct * 10000 // dataset.n


# --------------------------------------------------------------------------------------
# Export and load
# --------------------------------------------------------------------------------------


def export_model(model: IntegerModel, sml: SML, out_dir: str | Path, meta: dict) -> DeliveredModel:
    """Write model.safetensors, model.pt, model.plmd and meta.json; returns the module."""
    from safetensors.torch import save_file

    from miner.integer_model import encode_model

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    module = DeliveredModel.from_integer_model(model, sml)
    state = {name: tensor.contiguous() for name, tensor in module.state_dict().items()}
    spec_json = model_spec_canonical_bytes(model.spec).decode("ascii")
    full_meta = {
        "format": FORMAT,
        **meta,
        "architecture": model_spec_to_obj(model.spec),
        "model_spec": "0x" + model_spec_digest(model.spec).hex(),
        "weight_widths": list(model.weight_widths),
        "input": f"raw features: (n, {module.input_dim}) integers 0..255",
        "sml": {"shape": list(sml.matrix.shape), "matrix_digest": "0x" + sml.matrix_digest().hex()},
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
    module = DeliveredModel(spec, tuple(meta.get("weight_widths", ())))
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


def fetch_model(client: PoLeClient, w3: Web3, task_id: int, out_dir: str | Path) -> Delivery:
    """Fetch, check and export the winning model of settled task `task_id` into `out_dir`."""
    from pole_chain.clients.data_node import DataNodeError, get_task

    try:
        task = get_task(client, task_id)
    except DataNodeError as error:
        raise ModelDeliveryError(str(error)) from None
    if task.status != "settled" or task.result is None:
        raise ModelDeliveryError(f"task {task_id} is {task.status}, not settled: there is no winning model")
    result = task.result
    block = w3.eth.get_block(result.block_number)
    parent_hash = bytes(block["parentHash"])
    if bytes(block["mixHash"]) != result.model_commitment:
        raise ModelDeliveryError(
            f"block #{result.block_number} does not carry task {task_id}'s model commitment"
        )

    blob = client.get_model(result.model_commitment)
    if blob is None:
        raise ModelDeliveryError(f"the node has no model for commitment 0x{result.model_commitment.hex()}")
    # The check that makes delivery trustless: these are the bytes the block committed to.
    if commitment_for(blob, result.winner, parent_hash) != result.model_commitment:
        raise ModelDeliveryError(
            "the model blob the node served does not hash to the on-chain commitment: refused"
        )
    try:
        model = decode_model(blob)
        check_model_matches_task(model, task.model_spec)
    except ModelFormatError as error:
        raise ModelDeliveryError(f"committed model rejected: {error}") from None
    d = model.spec.input_dim // SML_EXPANSION
    sml = sml_for(parent_hash, result.winner, d)

    test_set = _released_test_set(client, task_id, parent_hash, result.release_digest_prefix)
    meta = {
        "task_id": task_id,
        "chain_id": w3.eth.chain_id,
        "winner": to_checksum_address(result.winner),
        "model_commitment": "0x" + result.model_commitment.hex(),
        "model_blob_digest": "0x" + keccak(blob).hex(),
        "block_number": result.block_number,
        "block_hash": "0x" + bytes(block["hash"]).hex(),
        "parent_hash": "0x" + parent_hash.hex(),
        "sml_seed": "0x" + sml_seed(parent_hash, result.winner).hex(),
        "train_bps": result.train_bps,
        "test_bps": result.test_bps,
        "reward_wei": str(task.reward),
        "checked_test_bps": None,
    }
    if test_set is not None:
        # The delivered module must reproduce the consensus evaluation it was paid for.
        checked = DeliveredModel.from_integer_model(model, sml).accuracy_bps(test_set)
        consensus = evaluate_integer_model(model, sml, test_set)
        if checked != result.test_bps or consensus != result.test_bps:
            raise ModelDeliveryError(
                f"claimed test accuracy {result.test_bps} bps, but the model scores {consensus} "
                f"bps (exported module: {checked} bps) on the released test set"
            )
        meta["checked_test_bps"] = checked
    module = export_model(model, sml, out_dir, meta)
    return Delivery(Path(out_dir).expanduser(), meta, module)


def _released_test_set(
    client: PoLeClient, task_id: int, parent_hash: bytes, digest_prefix: bytes
) -> Optional[Dataset]:
    """The test set the winning block was evaluated on, if the node still serves it: from
    the release for (task, parent) whose digest the block's seal (and the result) carries."""
    try:
        raw = client.get_release(task_id, parent_hash)
        if raw is None:
            return None
        release = Release.decode(raw)
        if release.digest[: len(digest_prefix)] != digest_prefix:
            return None
        test_set = decode_dataset(client.get_blob(release.test_set_digest))
    except (NodeError, DatasetFormatError, ValueError):
        return None
    return test_set if keccak(encode_dataset(test_set)) == release.test_set_digest else None
