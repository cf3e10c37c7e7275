"""Deterministic evaluation of an IntegerModel (consensus-critical).

Every value is an integer: integer weights and biases, rounding right shift, saturation, ReLU,
max-pooling, argmax. The dot products are float64 GEMMs of integer values (miner/products.py),
converted back to int64, which is exact, bit for bit on every machine, thread count and
BLAS: the model format (integer_model.py) guarantees that every partial sum of every dot
product is an integer below 2**53 in magnitude, and float64 adds and multiplies such integers
exactly, in any order, with or without FMA (proof in docs/ML.md, "Deterministic evaluation").
Everything after the products (bias, rounding shift, saturation) is int64.

Kernels (on numpy's BLAS, or all on torch's in a model with convolutions): a dense layer is
one GEMM. A convolution is k*k GEMMs accumulated into one output, one per kernel offset, each
reading its window of the padded input in place (`conv2d_bl`): no unfold. Activations of
image layers are held batch-last, (c, h, w, n): a window is then a strided matrix BLAS takes
as it is, the output (o, h'*w'*n) is already in that layout, the pooling reads long
contiguous runs, and `flatten_bl` restores torch's per-sample channel-major order.

No int64 overflow is possible after the products: |acc| < 2**53, |bias| < 2**31, and the
rounding term is at most 2**61 (shift <= 62), so acc + bias + 2**(shift-1) < 2**63.
"""

from __future__ import annotations

import math

import numpy as np

from miner.datasets import Dataset
from miner.integer_model import ACTIVATION_BOUND, IntegerConv2d, IntegerDense, IntegerModel
from miner.model_spec import (
    Conv2d,
    Flatten,
    MaxPool2d,
    ModelSpec,
    ReLU,
    layer_shapes,
    macs_per_sample,
)
from miner.products import accumulate_products, integer_matmul
from miner.sml import SML

ACTIVATION_MIN = -ACTIVATION_BOUND
ACTIVATION_MAX = ACTIVATION_BOUND - 1
EVAL_BATCH = 512  # samples per batch; only bounds memory, results do not depend on it
#: Values held per batch at most (a conv's padded input or its products are the big ones):
#: 2 MB of float64, which stays in cache between the GEMMs that write the products and the
#: pooling that reads them. Measured (one thread, 2,000 samples, alternating runs): 2**18
#: kept every bench CNN within 0.82-1.2 of its im2col GEMM on torch's BLAS; 2**19 left the
#: built-in cnn at 0.65, 2**17 the 32-channel one at 0.68 (smaller GEMMs).
BATCH_VALUES = 1 << 18
#: Multiply-accumulates one evaluation may cost (SML + network over every sample): a block
#: whose task needs more is refused by every node alike, before any work is done.
MAX_EVALUATION_MACS = 1 << 35


class IncompatibleModelError(ValueError):
    """The model does not fit the SML or dataset it is evaluated with."""


class Workspace:
    """Scratch arrays one evaluation reuses from batch to batch, by name and shape.

    A wide conv's padded input and products are megabytes. Allocated afresh for every batch,
    the allocator handed their pages back and took them again, each first touch a page
    fault: a batch took up to four times as long, varying from run to run with the
    allocator's state (measured: the 8-channel 28x28 cnn, 64-276 ms for the same 2,000
    samples). Only an array's contents change between uses; a padded input's border and its
    spare tail, never written, stay zero.
    """

    def __init__(self) -> None:
        self._arrays: dict[tuple, np.ndarray] = {}

    def array(self, name: tuple, shape: tuple[int, ...], *, zeroed: bool = False,
              dtype: type = np.float64) -> np.ndarray:
        held = self._arrays.get(name)
        if held is None or held.shape != shape:
            held = np.zeros(shape, dtype) if zeroed else np.empty(shape, dtype)
            self._arrays[name] = held
        return held


# --- the small pure functions --------------------------------------------------------------


def round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """floor((x + 2**(shift-1)) / 2**shift): divide by 2**shift, rounding halves up."""
    if shift == 0:
        return x
    return (x + np.int64(1 << (shift - 1))) >> np.int64(shift)


def saturate(x: np.ndarray) -> np.ndarray:
    """Clamp to [-2**24, 2**24 - 1], the activation range of the model format."""
    return np.clip(x, ACTIVATION_MIN, ACTIVATION_MAX)


def requantize(acc: np.ndarray, bias: np.ndarray, shift: int, low: int = ACTIVATION_MIN) -> np.ndarray:
    """saturate(round_shift(acc + bias, shift)), in place on the int64 accumulator. bias
    broadcasts against acc. low = 0 also applies a following ReLU (relu(saturate(v)) =
    clip(v, 0, max)); the evaluator uses it to save a pass, the result is the same."""
    offset = bias.astype(np.int64)
    if shift:
        offset = offset + np.int64(1 << (shift - 1))
    acc += offset
    if shift:
        acc >>= np.int64(shift)
    return np.clip(acc, low, ACTIVATION_MAX, out=acc)


def dense(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, shift: int, low: int = ACTIVATION_MIN,
    on_torch: bool = False,
) -> np.ndarray:
    """x (n, fan_in), weight (units, fan_in), bias (units,) -> (n, units) int64. on_torch: the
    product on torch's BLAS (in a model with convolutions, miner/products.py)."""
    acc = integer_matmul(x.astype(np.float64), weight.astype(np.float64).T, on_torch)
    return requantize(acc, bias, shift, low)


def conv2d_bl(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, shift: int, padding: str,
    low: int = ACTIVATION_MIN, pool: int = 1, workspace: tuple[Workspace, object] | None = None,
) -> np.ndarray:
    """Batch-last: x (c, h, w, n), weight (o, c, k, k) -> (o, h', w', n). Stride 1, zero
    padding k//2 for "same"; cross-correlation, like torch.nn.Conv2d.

    pool > 1 also applies the maxpool2d(pool) that follows the layer, to the accumulator,
    before requantising: for each output channel requantisation (its bias, the rounding
    shift, the clip) is non-decreasing in the accumulator, so the max of the requantised
    values is the requantised max; it then runs on 1/pool**2 of the values.

    workspace: (a Workspace, this layer's key in it) to reuse the scratch arrays."""
    space, key = workspace if workspace is not None else (Workspace(), None)
    c, h, w, n = x.shape
    o, _, k, _ = weight.shape
    p = k // 2 if padding == "same" else 0
    hp, wp = h + 2 * p, w + 2 * p
    out_h, out_w = hp - k + 1, wp - k + 1
    # Each channel's padded image flattened to one row, plus k - 1 spare pixels of zeros. An
    # output row is computed over the full padded width wp: out[:, i, j] for j < out_w is the
    # convolution; j >= out_w wrap onto the next row, are never read, and bound like the rest.
    # Then the window of kernel offset (dy, dx) is one contiguous run of every row, starting
    # at (dy * wp + dx) * n: a strided matrix that BLAS reads in place.
    flat = space.array((key, "padded"), (c, (hp * wp + k - 1) * n), zeroed=True)
    flat[:, : hp * wp * n].reshape(c, hp, wp, n)[:, p : p + h, p : p + w] = x
    taps = np.ascontiguousarray(weight.transpose(2, 3, 0, 1), dtype=np.float64)  # (k, k, o, c)
    run = out_h * wp * n
    terms = [(taps[dy, dx], flat[:, (dy * wp + dx) * n :][:, :run]) for dy in range(k) for dx in range(k)]
    acc = accumulate_products(terms, space.array((key, "products"), (o, run)))
    acc = acc.reshape(o, out_h, wp, n)[:, :, :out_w]
    if pool > 1:
        acc = maxpool2d(acc, pool, axes=(1, 2), out=space.array((key, "pooled"), _pooled_shape(acc.shape, pool)))
    values = space.array((key, "values"), acc.shape, dtype=np.int64)  # the layer's output
    np.copyto(values, acc, casting="unsafe")
    return requantize(values, bias[:, None, None, None], shift, low)


def _pooled_shape(shape: tuple[int, ...], size: int) -> tuple[int, ...]:
    """(o, h, w, n) -> (o, h // size, w // size, n)."""
    return (shape[0], shape[1] // size, shape[2] // size, shape[3])


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, shift: int, padding: str) -> np.ndarray:
    """x (n, c, h, w), weight (o, c, k, k) -> (n, o, h', w'): `conv2d_bl` in torch's layout."""
    out = conv2d_bl(x.transpose(1, 2, 3, 0), weight, bias, shift, padding)
    return out.transpose(3, 0, 1, 2)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def maxpool2d(
    x: np.ndarray, size: int, axes: tuple[int, int] = (2, 3), out: np.ndarray | None = None
) -> np.ndarray:
    """Max over size x size windows of the two image axes of x: (n, c, h, w) by default,
    axes (1, 2) for the evaluator's (c, h, w, n); leftover rows/columns are dropped. Into
    `out` (of the pooled shape and x's dtype) if given."""
    oh, ow = x.shape[axes[0]] // size, x.shape[axes[1]] // size

    def view(dy: int, dx: int) -> np.ndarray:
        index = [slice(None)] * x.ndim
        index[axes[0]] = slice(dy, oh * size, size)
        index[axes[1]] = slice(dx, ow * size, size)
        return x[tuple(index)]

    # the maximum of size*size strided views (numpy's max over the windows' axes is ~20x slower)
    if out is None:
        out = view(0, 0).copy()
    else:
        np.copyto(out, view(0, 0))
    for dy in range(size):
        for dx in range(size):
            if dy or dx:
                np.maximum(out, view(dy, dx), out=out)
    return out


def flatten(x: np.ndarray) -> np.ndarray:
    """(n, c, h, w) -> (n, c*h*w), channel-major (torch's order)."""
    return x.reshape(x.shape[0], -1)


def flatten_bl(x: np.ndarray) -> np.ndarray:
    """(c, h, w, n) -> (n, c*h*w), channel-major per sample (torch's order); a view."""
    return x.reshape(-1, x.shape[-1]).T


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


def evaluation_macs(spec: ModelSpec, sml: SML, samples: int) -> int:
    """Multiply-accumulates of evaluating ``samples`` rows: the SML's products plus the
    network's."""
    return samples * (sml.macs_per_sample + macs_per_sample(spec))


def values_per_sample(spec: ModelSpec) -> int:
    """The largest array one sample adds to a batch: an activation, or a conv's padded input
    or its products (computed over the padded width, `conv2d_bl`)."""
    shapes = layer_shapes(spec)
    largest = math.prod(spec.input_shape)
    for layer, before, after in zip(spec.layers, shapes, shapes[1:]):
        largest = max(largest, math.prod(after))
        if isinstance(layer, Conv2d):
            pad = 2 * (layer.kernel // 2) if layer.padding == "same" else 0
            padded_width = before[2] + pad
            largest = max(largest, before[0] * (before[1] + pad) * padded_width, after[0] * after[1] * padded_width)
    return largest


def integer_logits(model: IntegerModel, sml: SML, features: np.ndarray) -> np.ndarray:
    """features (n, d) integers -> logits (n, num_classes) int64, within the consensus cost
    limit (a block whose evaluation would cost more is refused by every node alike)."""
    check_compatible(model, sml, features.shape[1])
    cost = evaluation_macs(model.spec, sml, features.shape[0])
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
    batch = max(1, min(EVAL_BATCH, BATCH_VALUES // values_per_sample(model.spec)))
    batches, workspace = [], Workspace()
    for chunk in range(0, features.shape[0], EVAL_BATCH):  # the SML in chunks of EVAL_BATCH
        mapped = sml.apply_int(features[chunk : chunk + EVAL_BATCH])
        batches += [
            _forward(model, mapped[start : start + batch], workspace)
            for start in range(0, mapped.shape[0], batch)
        ]
    return np.concatenate(batches, axis=0)


def _forward(model: IntegerModel, x: np.ndarray, workspace: Workspace | None = None) -> np.ndarray:
    """SML output (n, input_dim) int64 -> logits (n, num_classes) int64. Image activations
    are held as (c, h, w, n) (see the module docstring)."""
    n = x.shape[0]
    if len(model.spec.input_shape) == 3:
        x = x.reshape((n,) + model.spec.input_shape).transpose(1, 2, 3, 0)
    workspace = workspace if workspace is not None else Workspace()
    on_torch = any(isinstance(layer, IntegerConv2d) for layer in model.layers)  # one BLAS an evaluation
    for i, (layer, low, pool) in enumerate(_steps(model.layers)):
        if isinstance(layer, IntegerDense):
            x = dense(x, layer.weight, layer.bias, layer.shift, low, on_torch)
        elif isinstance(layer, IntegerConv2d):
            x = conv2d_bl(x, layer.weight, layer.bias, layer.shift, layer.padding, low, pool, (workspace, i))
        elif isinstance(layer, ReLU):
            x = relu(x)
        elif isinstance(layer, MaxPool2d):
            x = maxpool2d(x, layer.size, axes=(1, 2))
        elif isinstance(layer, Flatten):
            x = flatten_bl(x)
        else:
            raise IncompatibleModelError(f"unknown integer layer {layer!r}")
    return np.array(x)  # a copy: a conv's output (flattened last) lives in the workspace


def _steps(layers: tuple) -> list[tuple[object, int, int]]:
    """(layer, low, pool) per step of the forward pass. A ReLU right after a dense/conv layer
    is folded into its saturation (low = 0: relu(clip(v, lo, hi)) = clip(v, 0, hi)), and a
    maxpool right after a conv layer (or after its folded ReLU) into the conv (`conv2d_bl`'s
    pool); both give the same values as the layers one by one."""
    steps: list[tuple[object, int, int]] = []
    i = 0
    while i < len(layers):
        layer, low, pool = layers[i], ACTIVATION_MIN, 1
        i += 1
        if isinstance(layer, (IntegerDense, IntegerConv2d)) and i < len(layers) and isinstance(layers[i], ReLU):
            low, i = 0, i + 1
        if isinstance(layer, IntegerConv2d) and i < len(layers) and isinstance(layers[i], MaxPool2d):
            pool, i = layers[i].size, i + 1
        steps.append((layer, low, pool))
    return steps


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
