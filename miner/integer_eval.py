"""Deterministic evaluation of an IntegerModel (consensus-critical).

Everything here is numpy int64: integer matmul, add, rounding right shift, saturation, ReLU,
max-pooling, argmax. No floats, no BLAS (numpy's integer matmul is its own exact loop), so the
result is the same bit for bit on every machine, thread count and numpy version.

No int64 overflow is possible: a parametric layer's input is either the SML output (|v| < 2**20)
or a saturated activation (|v| <= 2**31); weights are at most 2**15 in magnitude; the fan-in is
at most 2**14 (model_spec.MAX_FAN_IN). So every accumulator stays below
2**31 * 2**15 * 2**14 + 2**31 (bias) + 2**61 (rounding term, shift <= 62) < 2**63.
"""

from __future__ import annotations

import numpy as np

from miner.datasets import Dataset
from miner.integer_model import IntegerConv2d, IntegerDense, IntegerModel
from miner.model_spec import Flatten, MaxPool2d, ModelSpec, ReLU, macs_per_sample
from miner.sml import SML, SML_EXPANSION

ACTIVATION_MIN = -(1 << 31)
ACTIVATION_MAX = (1 << 31) - 1
EVAL_BATCH = 512  # samples per batch; only bounds memory, results do not depend on it
#: Integers held per batch at most (im2col patches of a wide conv are the big ones).
BATCH_VALUES = 1 << 24
#: Multiply-accumulates one evaluation may cost (SML + network over every sample): a block
#: whose task needs more is refused by every node alike, before any work is done.
MAX_EVALUATION_MACS = 1 << 31


class IncompatibleModelError(ValueError):
    """The model does not fit the SML or dataset it is evaluated with."""


# --- the small pure functions --------------------------------------------------------------


def round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """floor((x + 2**(shift-1)) / 2**shift): divide by 2**shift, rounding halves up."""
    if shift == 0:
        return x
    return (x + np.int64(1 << (shift - 1))) >> np.int64(shift)


def saturate(x: np.ndarray) -> np.ndarray:
    """Clamp to the int32 range (activations are int32 values held in int64)."""
    return np.clip(x, ACTIVATION_MIN, ACTIVATION_MAX)


def requantize(acc: np.ndarray, shift: int) -> np.ndarray:
    return saturate(round_shift(acc, shift))


def dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, shift: int) -> np.ndarray:
    """x (n, fan_in), weight (units, fan_in), bias (units,) -> (n, units)."""
    acc = x @ weight.astype(np.int64).T + bias.astype(np.int64)
    return requantize(acc, shift)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, shift: int, padding: str) -> np.ndarray:
    """x (n, c, h, w), weight (o, c, k, k), stride 1, zero padding k//2 for "same".
    -> (n, o, h', w'). Cross-correlation, like torch.nn.Conv2d."""
    n, c, h, w = x.shape
    o, _, k, _ = weight.shape
    if padding == "same":
        p = k // 2
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out_h, out_w = x.shape[2] - k + 1, x.shape[3] - k + 1
    # patches[n, c, dy, dx, i, j] = x[n, c, i + dy, j + dx]
    patches = np.stack(
        [x[:, :, dy : dy + out_h, dx : dx + out_w] for dy in range(k) for dx in range(k)], axis=2
    ).reshape(n, c * k * k, out_h * out_w)
    acc = weight.astype(np.int64).reshape(o, c * k * k) @ patches  # (n, o, out_h*out_w)
    acc = acc + bias.astype(np.int64)[None, :, None]
    return requantize(acc, shift).reshape(n, o, out_h, out_w)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def maxpool2d(x: np.ndarray, size: int) -> np.ndarray:
    """(n, c, h, w) -> (n, c, h // size, w // size); leftover rows/columns are dropped."""
    n, c, h, w = x.shape
    oh, ow = h // size, w // size
    x = x[:, :, : oh * size, : ow * size].reshape(n, c, oh, size, ow, size)
    return x.max(axis=(3, 5))


def flatten(x: np.ndarray) -> np.ndarray:
    """(n, c, h, w) -> (n, c*h*w), channel-major (torch's order)."""
    return x.reshape(x.shape[0], -1)


def argmax_lowest(logits: np.ndarray) -> np.ndarray:
    """Index of the largest logit per row; ties go to the lowest class index."""
    return np.argmax(logits, axis=1)  # numpy returns the first occurrence of the maximum


# --- the model ------------------------------------------------------------------------


def check_compatible(model: IntegerModel, sml: SML, input_dim: int | None = None) -> None:
    if sml.out_dim != model.spec.input_dim:
        raise IncompatibleModelError(
            f"model input has {model.spec.input_dim} values, SML gives {sml.out_dim}"
        )
    if input_dim is not None and input_dim != sml.input_dim:
        raise IncompatibleModelError(f"dataset has {input_dim} features, SML takes {sml.input_dim}")


def evaluation_macs(spec: ModelSpec, samples: int, features: int) -> int:
    """Multiply-accumulates of evaluating ``samples`` rows: SML (2d x d) plus the network."""
    return samples * (SML_EXPANSION * features * features + macs_per_sample(spec))


def integer_logits(model: IntegerModel, sml: SML, features: np.ndarray) -> np.ndarray:
    """features (n, d) integers -> logits (n, num_classes) int64, within the consensus cost
    limit (a block whose evaluation would cost more is refused by every node alike)."""
    check_compatible(model, sml, features.shape[1])
    cost = evaluation_macs(model.spec, features.shape[0], features.shape[1])
    if cost > MAX_EVALUATION_MACS:
        raise IncompatibleModelError(
            f"evaluation needs {cost} multiply-accumulates, limit {MAX_EVALUATION_MACS}"
        )
    return integer_forward(model, sml, features)


def integer_forward(model: IntegerModel, sml: SML, features: np.ndarray) -> np.ndarray:
    """The integer forward pass, the one implementation: SML, then every layer, in batches.

    features (n, d) integers 0..255 -> logits (n, num_classes) int64. Consensus calls it
    through `integer_logits` (which bounds the cost); the delivered torch module
    (pole_chain/clients/model_delivery.py) calls it directly, so both compute the same numbers.
    """
    check_compatible(model, sml, features.shape[1])
    per_sample = max(macs_per_sample(model.spec), sml.out_dim)
    batch = max(1, min(EVAL_BATCH, BATCH_VALUES // per_sample))
    batches = [
        _forward(model, sml.apply_int(features[start : start + batch]))
        for start in range(0, features.shape[0], batch)
    ]
    return np.concatenate(batches, axis=0)


def _forward(model: IntegerModel, x: np.ndarray) -> np.ndarray:
    x = x.reshape((x.shape[0],) + model.spec.input_shape)  # SML output, int64
    for layer in model.layers:
        if isinstance(layer, IntegerDense):
            x = dense(x, layer.weight, layer.bias, layer.shift)
        elif isinstance(layer, IntegerConv2d):
            x = conv2d(x, layer.weight, layer.bias, layer.shift, layer.padding)
        elif isinstance(layer, ReLU):
            x = relu(x)
        elif isinstance(layer, MaxPool2d):
            x = maxpool2d(x, layer.size)
        elif isinstance(layer, Flatten):
            x = flatten(x)
        else:
            raise IncompatibleModelError(f"unknown integer layer {layer!r}")
    return x


def predict(model: IntegerModel, sml: SML, features: np.ndarray) -> np.ndarray:
    return argmax_lowest(integer_logits(model, sml, features))


def accuracy_bps(predictions: np.ndarray, labels: np.ndarray) -> int:
    """correct * 10000 // n: how every accuracy in this chain is counted (floor, in bps)."""
    correct = int(np.count_nonzero(np.asarray(predictions) == np.asarray(labels).astype(np.int64)))
    return correct * 10000 // len(labels)


def evaluate_integer_model(model: IntegerModel, sml: SML, dataset: Dataset) -> int:
    """Accuracy in basis points: correct * 10000 // n."""
    if model.spec.num_classes != dataset.num_classes:
        raise IncompatibleModelError(
            f"model has {model.spec.num_classes} classes, dataset {dataset.num_classes}"
        )
    return accuracy_bps(predict(model, sml, dataset.features), dataset.labels)
