import json

import pytest
from eth_utils import keccak

from miner.model_spec import (
    PREDEFINED_MODELS,
    Conv2d,
    Dense,
    Flatten,
    MaxPool2d,
    ModelSpec,
    ModelSpecError,
    ReLU,
    build_spec,
    layer_shapes,
    model_spec_canonical_bytes,
    model_spec_digest,
    model_spec_from_json,
)

MLP_DIGITS_JSON = (
    b'{"input_shape":[128],"layers":[{"type":"dense","units":64},{"type":"relu"},'
    b'{"type":"dense","units":10}],"num_classes":10,"version":1}'
)


def test_mlp_canonical_bytes_and_digest_are_pinned():
    spec = build_spec("mlp", 64, 10, (1, 8, 8))
    assert model_spec_canonical_bytes(spec) == MLP_DIGITS_JSON
    assert model_spec_digest(spec) == keccak(MLP_DIGITS_JSON)
    assert model_spec_digest(spec).hex() == (
        "f56b37e73461949f57093b6c6dbede5009574c4fb49d52665ad35a5efcf0a64c"
    )


@pytest.mark.parametrize("name", PREDEFINED_MODELS)
def test_predefined_round_trip(name):
    spec = build_spec(name, 64, 10, (1, 8, 8))
    canonical = model_spec_canonical_bytes(spec)
    assert model_spec_from_json(canonical, require_canonical=True) == spec
    pretty = json.dumps(json.loads(canonical), indent=2)
    assert model_spec_from_json(pretty) == spec
    with pytest.raises(ModelSpecError, match="canonical"):
        model_spec_from_json(pretty, require_canonical=True)


def test_cnn_shapes():
    spec = build_spec("cnn", 64, 10, (1, 8, 8))
    assert spec.input_shape == (8, 8, 8)  # LOCAL_SML_EXPANSION maps per input channel
    assert layer_shapes(spec) == [(8, 8, 8), (8, 8, 8), (8, 8, 8), (8, 4, 4), (128,), (10,)]
    assert build_spec("cnn", 64, 10, (1, 8, 8), expansion=2).input_shape == (2, 8, 8)
    valid = ModelSpec((2, 8, 8), 3, (Conv2d(4, 3, "valid"), Flatten(), Dense(3)))
    assert layer_shapes(valid)[1] == (4, 6, 6)
    with pytest.raises(ModelSpecError, match="image"):
        build_spec("cnn", 30, 2, None)


def test_builds_for_tabular_data():
    spec = build_spec("mlp", 30, 2)
    assert spec.input_shape == (60,) and spec.num_classes == 2
    with pytest.raises(ModelSpecError, match="unknown model"):
        build_spec("resnet", 30, 2)


def spec_obj(**changes):
    obj = json.loads(MLP_DIGITS_JSON)
    obj.update(changes)
    return obj


@pytest.mark.parametrize(
    "text, message",
    [
        (b"not json", "JSON"),
        (b"\xff\xfe", "JSON"),
        (b"[]", "object"),
        (json.dumps(spec_obj(version=2)), "version"),
        (json.dumps(spec_obj(version=True)), "version"),
        (json.dumps(spec_obj(extra=1)), "keys"),
        (json.dumps(spec_obj(num_classes=9)), "output shape"),
        (json.dumps(spec_obj(num_classes=1)), "num_classes"),
        (json.dumps(spec_obj(input_shape=[])), "input shape"),
        (json.dumps(spec_obj(input_shape=[2, 64])), "input shape"),
        (json.dumps(spec_obj(input_shape=[True])), "integer"),
        (json.dumps(spec_obj(layers=[])), "layers"),
        (json.dumps(spec_obj(layers=[{"type": "dense", "units": 10.0}])), "non-integer"),
        (json.dumps(spec_obj(layers=[{"type": "dense", "units": 10, "bias": 0}])), "keys"),
        (json.dumps(spec_obj(layers=[{"type": "lstm"}])), "unknown type"),
        (json.dumps(spec_obj(layers=[{"units": 10}])), "type"),
        (json.dumps(spec_obj(layers=[{"type": "dense", "units": 5000}])), "units"),
        (json.dumps(spec_obj(layers=[{"type": "dense", "units": 10}] * 33)), "layers"),
        (json.dumps(spec_obj(layers=[{"type": "flatten"}, {"type": "dense", "units": 10}])), "flatten"),
        (b'{"version":1,"version":1,"input_shape":[128],"num_classes":10,"layers":[]}', "duplicate"),
        (b'{"version":NaN}', "non-integer"),
        (b" " * 20000, "limit"),
    ],
)
def test_rejects_bad_specs(text, message):
    with pytest.raises(ModelSpecError, match=message):
        model_spec_from_json(text)


def test_rejects_bad_layer_combinations():
    with pytest.raises(ModelSpecError, match="flat input"):
        ModelSpec((2, 8, 8), 10, (Dense(10),))
    with pytest.raises(ModelSpecError, match="odd kernel"):
        ModelSpec((2, 8, 8), 2, (Conv2d(4, 2, "same"), Flatten(), Dense(2)))
    with pytest.raises(ModelSpecError, match="padding"):
        ModelSpec((2, 8, 8), 2, (Conv2d(4, 3, "full"), Flatten(), Dense(2)))
    with pytest.raises(ModelSpecError, match="pool"):
        ModelSpec((2, 1, 8), 2, (MaxPool2d(2), Flatten(), Dense(2)))
    with pytest.raises(ModelSpecError, match="needs a"):
        ModelSpec((16,), 2, (MaxPool2d(2), Dense(2)))
    with pytest.raises(ModelSpecError, match="parameters"):
        ModelSpec((4096,), 2, (Dense(4096), ReLU(), Dense(4096), ReLU(), Dense(2)))
    with pytest.raises(ModelSpecError, match="fan-in"):
        ModelSpec((4, 64, 64), 2, (Conv2d(8, 3), Flatten(), Dense(2)))
    with pytest.raises(ModelSpecError, match="input"):
        ModelSpec((16385,), 2, (Dense(2),))


@pytest.mark.parametrize(
    "text",
    ['{"input_shape":[4],"layers":[{"type":[]}],"num_classes":2,"version":1}',
     '{"input_shape":[' + "9" * 5000 + '],"layers":[],"num_classes":2,"version":1}'],
)
def test_hostile_spec_json_is_a_spec_error_not_a_crash(text):
    from miner.model_spec import ModelSpecError, model_spec_from_json

    with pytest.raises(ModelSpecError):
        model_spec_from_json(text)
