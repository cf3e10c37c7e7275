"""Model architectures: one small layer vocabulary, a canonical JSON form, and its digest.

A task names its architecture on chain by `model_spec_digest(spec)`, the keccak of the spec's
canonical JSON bytes (sorted keys, no whitespace, ASCII, integers only). The model blob embeds
the same bytes, so a node checks a submitted model's architecture by hashing them.

The spec's input is the SML output, not the raw dataset: a dataset of d features gives a flat
input of SML_EXPANSION * d values (the dense SML), and an image dataset (c, h, w) a model
with an image input (E * c, h, w), E = 2..8, behind the local SML; SML output index r is
channel r // (h*w), row (r % (h*w)) // w, column r % w (a plain reshape of the SML output
vector). miner/sml.py's `sml_layout` is the rule; `build_spec` does this arithmetic.

    {"input_shape":[128],"layers":[{"type":"dense","units":64},{"type":"relu"},
     {"type":"dense","units":10}],"num_classes":10,"version":1}

Layers (shapes are per sample):
    dense(units)                       (n,)      -> (units,)
    relu                               any       -> same
    conv2d(channels, kernel, padding)  (c, h, w) -> (channels, h', w'); stride 1;
                                       padding "same" (odd kernel, pad kernel//2) or "valid"
    maxpool2d(size)                    (c, h, w) -> (c, h // size, w // size); stride = size
    flatten                            (c, h, w) -> (c*h*w,), channel-major like torch
The last layer's output must be (num_classes,).
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import dataclass
from typing import Union

from eth_utils import keccak

from miner.sml import LOCAL_SML_EXPANSION, SML_EXPANSION

MODEL_SPEC_VERSION = 1
MAX_SPEC_JSON_BYTES = 16 * 1024
MAX_LAYERS = 32
MAX_UNITS = 4096
MAX_CHANNELS = 256
MAX_KERNEL = 7
MAX_POOL = 8
MAX_INPUT_VALUES = 16384
MAX_ACTIVATION_VALUES = 65536  # per sample, any layer
MAX_PARAMETERS = 4_000_000  # an int8 blob of this many weights fits MAX_MODEL_BYTES (4 MiB)
MAX_FAN_IN = 16384  # inputs per output unit; bounds the integer accumulators (docs/ML.md)
MAX_CLASSES = 256
#: Multiply-accumulates of one forward pass. Every validating node pays them for every sample
#: of the training and test sets, so they are part of a spec's validity (see integer_eval,
#: whose MAX_EVALUATION_MACS also bounds samples x this). 2**23: an MLP 1568-1024-1024-1024-10
#: (3.7 M) or a LeNet-size CNN on 28x28 (0.5 M) fit; docs/ML.md "Limits" has the timings.
MAX_MACS_PER_SAMPLE = 1 << 23
PADDINGS = ("same", "valid")


class ModelSpecError(ValueError):
    """A model spec (JSON or in memory) breaks the vocabulary, the shapes, or the limits.

    Messages show offending values through `reprlib.repr`: a hostile spec of 16 KiB of
    nesting is echoed as `[[[[[[...]]]]]]`, not in full into RPC errors and logs.
    """


@dataclass(frozen=True)
class Dense:
    units: int


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class Conv2d:
    channels: int
    kernel: int
    padding: str = "same"


@dataclass(frozen=True)
class MaxPool2d:
    size: int = 2


@dataclass(frozen=True)
class Flatten:
    pass


Layer = Union[Dense, ReLU, Conv2d, MaxPool2d, Flatten]
_LAYER_TYPES = {"dense": Dense, "relu": ReLU, "conv2d": Conv2d, "maxpool2d": MaxPool2d, "flatten": Flatten}
_LAYER_NAMES = {cls: name for name, cls in _LAYER_TYPES.items()}
_LAYER_FIELDS = {
    "dense": ("units",),
    "relu": (),
    "conv2d": ("channels", "kernel", "padding"),
    "maxpool2d": ("size",),
    "flatten": (),
}


@dataclass(frozen=True)
class ModelSpec:
    """An architecture: input shape (the SML output), number of classes, layers in order."""

    input_shape: tuple[int, ...]  # (n,) or (c, h, w)
    num_classes: int
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        macs = macs_per_sample(self)  # validates the shapes too
        if macs > MAX_MACS_PER_SAMPLE:
            raise ModelSpecError(f"{macs} multiply-accumulates per sample, limit {MAX_MACS_PER_SAMPLE}")

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)


# --- shape inference and validation ------------------------------------------------------


def _check_int(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelSpecError(f"{name} must be an integer, got {reprlib.repr(value)}")
    if not low <= value <= high:
        raise ModelSpecError(f"{name} = {value} outside {low}..{high}")
    return value


def layer_shapes(spec: ModelSpec) -> list[tuple[int, ...]]:
    """Per-sample shapes [input, after layer 0, after layer 1, ...]; raises ModelSpecError."""
    if len(spec.input_shape) not in (1, 3):
        raise ModelSpecError(f"input shape {spec.input_shape} must be (n,) or (c, h, w)")
    for i, size in enumerate(spec.input_shape):
        _check_int(size, f"input_shape[{i}]", 1, MAX_INPUT_VALUES)
    if math.prod(spec.input_shape) > MAX_INPUT_VALUES:
        raise ModelSpecError(f"input has {math.prod(spec.input_shape)} values, limit {MAX_INPUT_VALUES}")
    _check_int(spec.num_classes, "num_classes", 2, MAX_CLASSES)
    if not 1 <= len(spec.layers) <= MAX_LAYERS:
        raise ModelSpecError(f"{len(spec.layers)} layers, need 1..{MAX_LAYERS}")
    shapes = [spec.input_shape]
    parameters = 0
    for i, layer in enumerate(spec.layers):
        shape = shapes[-1]
        where = f"layer {i} ({_LAYER_NAMES.get(type(layer), type(layer).__name__)})"
        if isinstance(layer, Dense):
            _check_int(layer.units, f"{where} units", 1, MAX_UNITS)
            if len(shape) != 1:
                raise ModelSpecError(f"{where} needs a flat input, got {shape}; add flatten")
            _check_fan_in(shape[0], where)
            parameters += shape[0] * layer.units + layer.units
            shape = (layer.units,)
        elif isinstance(layer, Conv2d):
            _check_int(layer.channels, f"{where} channels", 1, MAX_CHANNELS)
            _check_int(layer.kernel, f"{where} kernel", 1, MAX_KERNEL)
            if layer.padding not in PADDINGS:
                raise ModelSpecError(f"{where} padding {reprlib.repr(layer.padding)} not one of {PADDINGS}")
            if len(shape) != 3:
                raise ModelSpecError(f"{where} needs a (c, h, w) input, got {shape}")
            c, h, w = shape
            _check_fan_in(c * layer.kernel * layer.kernel, where)
            if layer.padding == "same":
                if layer.kernel % 2 == 0:
                    raise ModelSpecError(f"{where} 'same' padding needs an odd kernel")
            else:
                if layer.kernel > h or layer.kernel > w:
                    raise ModelSpecError(f"{where} kernel {layer.kernel} larger than input {h}x{w}")
                h, w = h - layer.kernel + 1, w - layer.kernel + 1
            parameters += layer.channels * c * layer.kernel**2 + layer.channels
            shape = (layer.channels, h, w)
        elif isinstance(layer, MaxPool2d):
            _check_int(layer.size, f"{where} size", 2, MAX_POOL)
            if len(shape) != 3:
                raise ModelSpecError(f"{where} needs a (c, h, w) input, got {shape}")
            c, h, w = shape
            if layer.size > h or layer.size > w:
                raise ModelSpecError(f"{where} pool {layer.size} larger than input {h}x{w}")
            shape = (c, h // layer.size, w // layer.size)
        elif isinstance(layer, Flatten):
            if len(shape) != 3:
                raise ModelSpecError(f"{where} needs a (c, h, w) input, got {shape}")
            shape = (math.prod(shape),)
        elif isinstance(layer, ReLU):
            pass
        else:
            raise ModelSpecError(f"layer {i}: unknown layer {reprlib.repr(layer)}")
        if math.prod(shape) > MAX_ACTIVATION_VALUES:
            raise ModelSpecError(f"{where} output {shape} exceeds {MAX_ACTIVATION_VALUES} values")
        shapes.append(shape)
    if parameters > MAX_PARAMETERS:
        raise ModelSpecError(f"{parameters} parameters, limit {MAX_PARAMETERS}")

    if shapes[-1] != (spec.num_classes,):
        raise ModelSpecError(
            f"model output shape {shapes[-1]} must be ({spec.num_classes},) for {spec.num_classes} classes"
        )
    return shapes


def macs_per_sample(spec: ModelSpec) -> int:
    """Multiply-accumulates of one forward pass of the network (SML excluded)."""
    shapes = layer_shapes(spec)
    total = 0
    for layer, before, after in zip(spec.layers, shapes, shapes[1:]):
        if isinstance(layer, Dense):
            total += before[0] * layer.units
        elif isinstance(layer, Conv2d):
            total += layer.channels * before[0] * layer.kernel**2 * after[1] * after[2]
    return total


def _check_fan_in(fan_in: int, where: str) -> None:
    if fan_in > MAX_FAN_IN:
        raise ModelSpecError(f"{where} fan-in {fan_in} exceeds {MAX_FAN_IN}")


# --- canonical JSON -------------------------------------------------------------------


def model_spec_to_obj(spec: ModelSpec) -> dict:
    layers = []
    for layer in spec.layers:
        name = _LAYER_NAMES[type(layer)]
        entry = {"type": name}
        for field in _LAYER_FIELDS[name]:
            entry[field] = getattr(layer, field)
        layers.append(entry)
    return {
        "version": MODEL_SPEC_VERSION,
        "input_shape": list(spec.input_shape),
        "num_classes": spec.num_classes,
        "layers": layers,
    }


def model_spec_canonical_bytes(spec: ModelSpec) -> bytes:
    """Sorted keys, separators "," and ":", ASCII, no trailing newline."""
    return json.dumps(
        model_spec_to_obj(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def model_spec_digest(spec: ModelSpec) -> bytes:
    """keccak of the canonical JSON bytes: the task's `model_spec` field on chain."""
    return keccak(model_spec_canonical_bytes(spec))


def _reject_duplicates(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ModelSpecError(f"duplicate key in {sorted(keys)}")
    return dict(pairs)


def _reject_float(text):
    raise ModelSpecError(f"non-integer number {reprlib.repr(text)}")


def model_spec_from_json(data: bytes | str, *, require_canonical: bool = False) -> ModelSpec:
    """Parse and validate a spec. With require_canonical, the input must be exactly the
    canonical bytes (used for the copy embedded in a model blob)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_SPEC_JSON_BYTES:
        raise ModelSpecError(f"spec is {len(raw)} bytes, limit {MAX_SPEC_JSON_BYTES}")
    try:
        obj = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_float=_reject_float,
            parse_constant=_reject_float,
        )
    except ModelSpecError:
        raise
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, a 5000-digit integer
        raise ModelSpecError(f"spec is not valid JSON: {exc}") from exc
    spec = model_spec_from_obj(obj)
    if require_canonical and raw != model_spec_canonical_bytes(spec):
        raise ModelSpecError("spec JSON is not in canonical form")
    return spec


def model_spec_from_obj(obj) -> ModelSpec:
    if not isinstance(obj, dict):
        raise ModelSpecError("spec must be a JSON object")
    expected = {"version", "input_shape", "num_classes", "layers"}
    if set(obj) != expected:
        raise ModelSpecError(f"spec keys {sorted(obj)} must be exactly {sorted(expected)}")
    if obj["version"] != MODEL_SPEC_VERSION or isinstance(obj["version"], bool):
        raise ModelSpecError(f"unsupported spec version {reprlib.repr(obj['version'])}")
    if not isinstance(obj["input_shape"], list):
        raise ModelSpecError("input_shape must be a list of integers")
    if not isinstance(obj["layers"], list):
        raise ModelSpecError("layers must be a list")
    if len(obj["layers"]) > MAX_LAYERS:
        raise ModelSpecError(f"{len(obj['layers'])} layers, limit {MAX_LAYERS}")
    layers = [_layer_from_obj(i, entry) for i, entry in enumerate(obj["layers"])]
    for i, size in enumerate(obj["input_shape"]):
        _check_int(size, f"input_shape[{i}]", 1, MAX_INPUT_VALUES)
    return ModelSpec(
        input_shape=tuple(obj["input_shape"]), num_classes=obj["num_classes"], layers=tuple(layers)
    )


def _layer_from_obj(i: int, entry) -> Layer:
    if not isinstance(entry, dict) or "type" not in entry:
        raise ModelSpecError(f"layer {i} must be an object with a 'type'")
    name = entry["type"]
    if not isinstance(name, str) or name not in _LAYER_TYPES:
        raise ModelSpecError(f"layer {i}: unknown type {reprlib.repr(name)}; known {sorted(_LAYER_TYPES)}")
    fields = _LAYER_FIELDS[name]
    if set(entry) != {"type", *fields}:
        raise ModelSpecError(f"layer {i} ({name}) keys {sorted(entry)} must be type + {list(fields)}")
    for field in fields:
        if field != "padding":
            _check_int(entry[field], f"layer {i} ({name}) {field}", 1, 1 << 31)
    return _LAYER_TYPES[name](**{field: entry[field] for field in fields})


# --- predefined architectures --------------------------------------------------------------

PREDEFINED_MODELS: tuple[str, ...] = ("logreg", "mlp", "cnn")
MLP_HIDDEN_UNITS = 64
CNN_CHANNELS = 8


def build_spec(
    name: str,
    dataset_dim: int,
    num_classes: int,
    image_shape: tuple[int, int, int] | None = None,
    *,
    expansion: int | None = None,
) -> ModelSpec:
    """A predefined architecture for a dataset of `dataset_dim` features behind the SML.

    logreg: dense(classes)
    mlp:    dense(64), relu, dense(classes)
    cnn:    conv2d(8, 3x3, same), relu, maxpool2d(2), flatten, dense(classes); needs an
            image dataset; its input is the local SML output reshaped to (expansion*c, h, w).
    `expansion` defaults to SML_EXPANSION for the flat models and LOCAL_SML_EXPANSION for
    the cnn; other values are for the benchmarks (1: the no-SML baseline of bench.sml_cost).
    """
    if expansion is None:
        expansion = LOCAL_SML_EXPANSION if name == "cnn" else SML_EXPANSION
    if name == "logreg":
        return ModelSpec((expansion * dataset_dim,), num_classes, (Dense(num_classes),))
    if name == "mlp":
        layers = (Dense(MLP_HIDDEN_UNITS), ReLU(), Dense(num_classes))
        return ModelSpec((expansion * dataset_dim,), num_classes, layers)
    if name == "cnn":
        if image_shape is None:
            raise ModelSpecError("the cnn model needs an image dataset (image_shape)")
        c, h, w = image_shape
        if c * h * w != dataset_dim:
            raise ModelSpecError(f"image shape {image_shape} does not have {dataset_dim} values")
        layers = (
            Conv2d(CNN_CHANNELS, 3, "same"),
            ReLU(),
            MaxPool2d(2),
            Flatten(),
            Dense(num_classes),
        )
        return ModelSpec((expansion * c, h, w), num_classes, layers)
    raise ModelSpecError(f"unknown model {name!r}; choose from {PREDEFINED_MODELS}")
