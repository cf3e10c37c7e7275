"""miner/integer_model.py: `decode_model` refuses every blob that is not a canonical
integer model with ModelFormatError only, and every model survives encode -> decode."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from miner.integer_model import (
    MAX_SHIFT,
    MODEL_MAGIC,
    MODEL_VERSION,
    _HEADER,
    IntegerConv2d,
    IntegerDense,
    IntegerModel,
    ModelFormatError,
    decode_model,
    encode_model,
    model_digest,
)
from miner.model_spec import Conv2d, Dense, build_spec, layer_shapes, model_spec_to_obj
from tests.properties.mutations import json_values, mutated, refusal_kind, region_mutated

SPECS = (
    build_spec("logreg", 3, 2),
    build_spec("mlp", 2, 3),
    build_spec("cnn", 16, 2, (1, 4, 4)),
)


@st.composite
def models(draw: st.DrawFn) -> IntegerModel:
    """Random parameters (int8 or int16 per layer, any shift) for one of a few small specs."""
    spec = draw(st.sampled_from(SPECS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layers = []
    for spec_layer, in_shape in zip(spec.layers, layer_shapes(spec)):
        if not isinstance(spec_layer, (Dense, Conv2d)):
            layers.append(spec_layer)
            continue
        dtype = draw(st.sampled_from([np.int8, np.int16]))
        info = np.iinfo(dtype)
        if isinstance(spec_layer, Dense):
            shape, out = (spec_layer.units, in_shape[0]), spec_layer.units
        else:
            k = spec_layer.kernel
            shape, out = (spec_layer.channels, in_shape[0], k, k), spec_layer.channels
        weight = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        bias = rng.integers(-(2**31), 2**31 - 1, size=out, endpoint=True).astype(np.int32)
        shift = draw(st.integers(0, MAX_SHIFT))
        if isinstance(spec_layer, Dense):
            layers.append(IntegerDense(weight, bias, shift))
        else:
            layers.append(IntegerConv2d(weight, bias, shift, spec_layer.padding))
    return IntegerModel(spec, tuple(layers))


blobs = models().map(encode_model)


@st.composite
def respecced(draw: st.DrawFn) -> bytes:
    """A valid blob whose embedded spec JSON is swapped for another (valid, foreign, or a
    mangled copy), with spec_len kept consistent so decoding reaches the spec checks."""
    blob = draw(blobs)
    spec_len = _HEADER.unpack_from(blob)[2]
    obj = json.loads(blob[_HEADER.size : _HEADER.size + spec_len])
    choice = draw(st.sampled_from(("other", "value", "format")))
    if choice == "other":
        text = json.dumps(model_spec_to_obj(draw(st.sampled_from(SPECS))), separators=(",", ":"), sort_keys=True)
    elif choice == "value":
        obj[draw(st.sampled_from(sorted(obj)))] = draw(json_values)
        text = json.dumps(obj, separators=(",", ":"), sort_keys=True)
    else:
        text = json.dumps(obj, indent=1)  # same spec, not canonical
    spec = text.encode()
    return _HEADER.pack(MODEL_MAGIC, MODEL_VERSION, len(spec)) + spec + blob[_HEADER.size + spec_len :]


def decode_or_refuse(blob: bytes) -> IntegerModel | None:
    try:
        model = decode_model(blob)
    except ModelFormatError as error:
        event(f"refused: {refusal_kind(error)}")
        return None
    event("decoded")
    assert encode_model(model) == blob  # one model, one blob
    return model


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=40).map(lambda b: MODEL_MAGIC + b)))
def test_arbitrary_bytes_raise_only_model_format_error(blob):
    decode_or_refuse(blob)


@settings(max_examples=300)
@given(st.one_of(mutated(blobs), region_mutated(blobs, 200)))
def test_mutants_of_valid_blobs_raise_only_model_format_error(blob):
    decode_or_refuse(blob)


@settings(max_examples=200)
@given(respecced())
def test_blobs_with_another_embedded_spec_raise_only_model_format_error(blob):
    decode_or_refuse(blob)


@settings(max_examples=60)
@given(models())
def test_models_round_trip(model):
    blob = encode_model(model)
    decoded = decode_model(blob)
    assert decoded.spec == model.spec and model_digest(decoded) == model_digest(model)
    assert decoded.weight_widths == model.weight_widths
