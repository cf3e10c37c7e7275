"""The committed model: a quantised integer network and its canonical byte encoding.

An IntegerModel has one integer layer per layer of its ModelSpec, in the same order. Dense and
conv2d layers carry integer weights (int8 or int16), int32 biases and a right shift; the other
layers (relu, maxpool2d, flatten) have no parameters. Evaluation (miner/integer_eval.py) is
integer multiply, add, rounding right shift and saturation to int32, nothing else.

Encoding (the "model blob"; its keccak goes into the block's model commitment):

    magic          4      b"PLMD"
    version        1      1
    spec_len       4      u32 big-endian
    spec           spec_len  canonical model spec JSON (miner/model_spec.py), so a node checks
                          the architecture by keccak(spec) == the task's model_spec digest
    then, for each dense / conv2d layer in spec order:
    weight_width   1      1 (int8) or 2 (int16)
    shift          1      0..MAX_SHIFT, the layer's rounding right shift
    weights        width * count, little-endian signed, row-major:
                          dense (units, fan_in); conv2d (out_channels, in_channels, k, k)
    biases         4 * out, little-endian signed int32

Shapes are not stored: they follow from the spec. Decoding rejects truncated input, trailing
bytes, unknown widths, out-of-range shifts, a non-canonical spec, and blobs over MAX_MODEL_BYTES.

The exactness bound (checked on decode and on every IntegerModel, so a blob outside it is
refused before any evaluation): every activation a layer reads is an integer with
|a| <= ACTIVATION_BOUND = 2**24 (the evaluator saturates to it; the SML output is below 2**20),
and for every output unit i of a dense / conv2d layer

    sum_j |w_ij| * ACTIVATION_BOUND + |b_i|  <  EXACT_BOUND = 2**53.

Then every partial sum of every dot product, in any order, is an integer below 2**53 in
magnitude, which float64 represents exactly, so the evaluator may compute the products with
float64 BLAS (docs/ML.md, "Deterministic evaluation"). int8 weights always meet it (fan-in
<= 2**14 gives at most 2**7 * 2**14 * 2**24 = 2**45); int16 weights meet it unless a row's
weights sum, in magnitude, to about 2**29 (all -2**15 at a fan-in of 2**14 is out, all
+-32767 is in).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

import numpy as np
from eth_utils import keccak

from miner.model_spec import (
    Conv2d,
    Dense,
    Flatten,
    MaxPool2d,
    ModelSpec,
    ModelSpecError,
    ReLU,
    layer_shapes,
    model_spec_canonical_bytes,
    model_spec_digest,
    model_spec_from_json,
)

MODEL_MAGIC = b"PLMD"
MODEL_VERSION = 1
MAX_MODEL_BYTES = 4 * 1024 * 1024
MAX_SHIFT = 62
WEIGHT_DTYPES = {1: np.dtype("<i1"), 2: np.dtype("<i2")}
BIAS_DTYPE = np.dtype("<i4")
#: Activations (and the SML output) a parametric layer reads are integers of at most this
#: magnitude: the evaluator saturates every layer's output to [-2**24, 2**24 - 1].
ACTIVATION_BOUND = 1 << 24
#: Integers float64 holds exactly: every dot-product partial sum must stay below this.
EXACT_BOUND = 1 << 53
_HEADER = struct.Struct(">4sBI")  # magic, version, spec_len
_LAYER_HEADER = struct.Struct(">BB")  # weight width, shift


class ModelFormatError(ValueError):
    """A model blob or IntegerModel breaks the format rules."""


@dataclass(frozen=True, eq=False)
class IntegerDense:
    weight: np.ndarray  # int8 or int16, (units, fan_in)
    bias: np.ndarray  # int32, (units,)
    shift: int  # output = saturate(round_shift(weight @ x + bias, shift))


@dataclass(frozen=True, eq=False)
class IntegerConv2d:
    weight: np.ndarray  # int8 or int16, (out_channels, in_channels, k, k)
    bias: np.ndarray  # int32, (out_channels,)
    shift: int
    padding: str  # "same" or "valid", stride 1


IntegerLayer = Union[IntegerDense, IntegerConv2d, ReLU, MaxPool2d, Flatten]


@dataclass(frozen=True, eq=False)
class IntegerModel:
    """A quantised network whose architecture is exactly `spec`. Compare with `model_digest`."""

    spec: ModelSpec
    layers: tuple[IntegerLayer, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        _check_against_spec(self.spec, self.layers)

    @property
    def weight_widths(self) -> tuple[int, ...]:
        return tuple(
            layer.weight.dtype.itemsize
            for layer in self.layers
            if isinstance(layer, (IntegerDense, IntegerConv2d))
        )


def _check_against_spec(spec: ModelSpec, layers: tuple) -> None:
    if len(layers) != len(spec.layers):
        raise ModelFormatError(f"{len(layers)} integer layers for a spec of {len(spec.layers)}")
    shapes = layer_shapes(spec)
    for i, (layer, spec_layer) in enumerate(zip(layers, spec.layers)):
        in_shape = shapes[i]
        if isinstance(spec_layer, Dense):
            if not isinstance(layer, IntegerDense):
                raise ModelFormatError(f"layer {i}: expected dense, got {type(layer).__name__}")
            _check_params(i, layer, (spec_layer.units, in_shape[0]), spec_layer.units)
        elif isinstance(spec_layer, Conv2d):
            if not isinstance(layer, IntegerConv2d):
                raise ModelFormatError(f"layer {i}: expected conv2d, got {type(layer).__name__}")
            k = spec_layer.kernel
            _check_params(i, layer, (spec_layer.channels, in_shape[0], k, k), spec_layer.channels)
            if layer.padding != spec_layer.padding:
                raise ModelFormatError(f"layer {i}: padding {layer.padding!r} != spec {spec_layer.padding!r}")
        elif layer != spec_layer:
            raise ModelFormatError(f"layer {i}: {layer!r} does not match spec {spec_layer!r}")


def _check_params(i: int, layer, weight_shape: tuple[int, ...], out: int) -> None:
    if layer.weight.dtype not in (np.dtype(np.int8), np.dtype(np.int16)):
        raise ModelFormatError(f"layer {i}: weights must be int8 or int16, got {layer.weight.dtype}")
    if layer.weight.shape != weight_shape:
        raise ModelFormatError(f"layer {i}: weight shape {layer.weight.shape}, spec needs {weight_shape}")
    if layer.bias.dtype != np.dtype(np.int32) or layer.bias.shape != (out,):
        raise ModelFormatError(f"layer {i}: bias must be int32 of shape ({out},)")
    if isinstance(layer.shift, bool) or not isinstance(layer.shift, int) or not 0 <= layer.shift <= MAX_SHIFT:
        raise ModelFormatError(f"layer {i}: shift {layer.shift!r} outside 0..{MAX_SHIFT}")
    _check_exactness_bound(i, layer.weight.reshape(out, -1), layer.bias)


def accumulator_bounds(weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Per output unit: sum_j |w_ij| * ACTIVATION_BOUND + |b_i|, the largest magnitude any
    partial sum of its dot product (bias included) can reach. weight (out, fan_in)."""
    l1 = np.abs(weight.astype(np.int64)).sum(axis=1)  # <= 2**15 * 2**14: exact in int64
    return l1 * ACTIVATION_BOUND + np.abs(bias.astype(np.int64))  # < 2**54: exact


def _check_exactness_bound(i: int, weight: np.ndarray, bias: np.ndarray) -> None:
    bounds = accumulator_bounds(weight, bias)
    if bounds.size and int(bounds.max()) >= EXACT_BOUND:
        row = int(np.argmax(bounds))
        raise ModelFormatError(
            f"layer {i}: unit {row} can accumulate {int(bounds[row])} "
            f"(sum |w| * 2**24 + |b|), exactness bound 2**53 = {EXACT_BOUND}"
        )


# --- encoding ---------------------------------------------------------------------------


def encode_model(model: IntegerModel) -> bytes:
    """The canonical model blob (layout in the module docstring)."""
    spec_bytes = model_spec_canonical_bytes(model.spec)
    parts = [_HEADER.pack(MODEL_MAGIC, MODEL_VERSION, len(spec_bytes)), spec_bytes]
    for layer in model.layers:
        if isinstance(layer, (IntegerDense, IntegerConv2d)):
            width = layer.weight.dtype.itemsize
            parts.append(_LAYER_HEADER.pack(width, layer.shift))
            parts.append(layer.weight.astype(WEIGHT_DTYPES[width]).tobytes(order="C"))
            parts.append(layer.bias.astype(BIAS_DTYPE).tobytes(order="C"))
    blob = b"".join(parts)
    if len(blob) > MAX_MODEL_BYTES:
        raise ModelFormatError(f"model blob is {len(blob)} bytes, limit {MAX_MODEL_BYTES}")
    return blob


def model_digest(model: IntegerModel) -> bytes:
    """keccak of the model blob (the block's commitment also binds coinbase and parent)."""
    return keccak(encode_model(model))


def decode_model(blob: bytes) -> IntegerModel:
    """Parse a model blob; raise ModelFormatError on any deviation from the format."""
    blob = bytes(blob)
    if len(blob) > MAX_MODEL_BYTES:
        raise ModelFormatError(f"model blob is {len(blob)} bytes, limit {MAX_MODEL_BYTES}")
    if len(blob) < _HEADER.size:
        raise ModelFormatError(f"truncated header: {len(blob)} bytes, need {_HEADER.size}")
    magic, version, spec_len = _HEADER.unpack_from(blob)
    if magic != MODEL_MAGIC:
        raise ModelFormatError(f"bad magic {magic!r}, expected {MODEL_MAGIC!r}")
    if version != MODEL_VERSION:
        raise ModelFormatError(f"unsupported model version {version}")
    offset = _HEADER.size
    if len(blob) < offset + spec_len:
        raise ModelFormatError(f"truncated spec: need {spec_len} bytes at offset {offset}")
    try:
        spec = model_spec_from_json(blob[offset : offset + spec_len], require_canonical=True)
    except ModelSpecError as exc:
        raise ModelFormatError(f"embedded spec: {exc}") from exc
    offset += spec_len
    shapes = layer_shapes(spec)
    layers: list[IntegerLayer] = []
    for i, spec_layer in enumerate(spec.layers):
        if isinstance(spec_layer, Dense):
            weight, bias, shift, offset = _read_params(
                blob, offset, i, (spec_layer.units, shapes[i][0]), spec_layer.units
            )
            layers.append(IntegerDense(weight, bias, shift))
        elif isinstance(spec_layer, Conv2d):
            k = spec_layer.kernel
            weight, bias, shift, offset = _read_params(
                blob, offset, i, (spec_layer.channels, shapes[i][0], k, k), spec_layer.channels
            )
            layers.append(IntegerConv2d(weight, bias, shift, spec_layer.padding))
        else:
            layers.append(spec_layer)
    if offset != len(blob):
        raise ModelFormatError(f"{len(blob) - offset} trailing bytes after model")
    return IntegerModel(spec, tuple(layers))


def _read_params(blob: bytes, offset: int, i: int, weight_shape: tuple[int, ...], out: int):
    if len(blob) < offset + _LAYER_HEADER.size:
        raise ModelFormatError(f"layer {i}: truncated layer header at offset {offset}")
    width, shift = _LAYER_HEADER.unpack_from(blob, offset)
    offset += _LAYER_HEADER.size
    if width not in WEIGHT_DTYPES:
        raise ModelFormatError(f"layer {i}: weight width {width} not 1 or 2")
    if shift > MAX_SHIFT:
        raise ModelFormatError(f"layer {i}: shift {shift} exceeds {MAX_SHIFT}")
    count = int(np.prod(weight_shape))
    need = width * count + BIAS_DTYPE.itemsize * out
    if len(blob) < offset + need:
        raise ModelFormatError(f"layer {i}: truncated tensors, need {need} bytes at offset {offset}")
    weight = np.frombuffer(blob, dtype=WEIGHT_DTYPES[width], count=count, offset=offset)
    offset += width * count
    bias = np.frombuffer(blob, dtype=BIAS_DTYPE, count=out, offset=offset)
    offset += BIAS_DTYPE.itemsize * out
    native = np.int8 if width == 1 else np.int16
    return weight.astype(native).reshape(weight_shape), bias.astype(np.int32), shift, offset


def check_model_matches_task(model: IntegerModel, task_model_spec: bytes) -> None:
    """Raise ModelFormatError unless the model's architecture is the task's (by digest)."""
    digest = model_spec_digest(model.spec)
    if digest != bytes(task_model_spec):
        raise ModelFormatError(
            f"model architecture {digest.hex()} differs from the task's {bytes(task_model_spec).hex()}"
        )
