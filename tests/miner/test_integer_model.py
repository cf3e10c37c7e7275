import numpy as np
import pytest

from miner.integer_model import (
    MAX_MODEL_BYTES,
    IntegerConv2d,
    IntegerDense,
    IntegerModel,
    ModelFormatError,
    check_model_matches_task,
    decode_model,
    encode_model,
    model_digest,
)
from miner.model_spec import (
    Dense,
    ModelSpec,
    ReLU,
    build_spec,
    layer_shapes,
    model_spec_canonical_bytes,
    model_spec_digest,
)


def random_model(spec: ModelSpec, seed: int = 0, wide: bool = False) -> IntegerModel:
    """Random parameters for any spec (int16 weights when wide)."""
    rng = np.random.default_rng(seed)
    shapes = layer_shapes(spec)
    dtype, bound = (np.int16, 1 << 15) if wide else (np.int8, 1 << 7)
    layers = []
    for spec_layer, in_shape in zip(spec.layers, shapes):
        name = type(spec_layer).__name__
        if name == "Dense":
            w = rng.integers(-bound, bound, size=(spec_layer.units, in_shape[0])).astype(dtype)
            b = rng.integers(-1000, 1000, size=spec_layer.units).astype(np.int32)
            layers.append(IntegerDense(w, b, int(rng.integers(0, 12))))
        elif name == "Conv2d":
            k = spec_layer.kernel
            w = rng.integers(-bound, bound, size=(spec_layer.channels, in_shape[0], k, k)).astype(dtype)
            b = rng.integers(-1000, 1000, size=spec_layer.channels).astype(np.int32)
            layers.append(IntegerConv2d(w, b, int(rng.integers(0, 12)), spec_layer.padding))
        else:
            layers.append(spec_layer)
    return IntegerModel(spec, tuple(layers))


TINY = ModelSpec((4,), 2, (Dense(3), ReLU(), Dense(2)))


@pytest.mark.parametrize("name", ["logreg", "mlp", "cnn"])
@pytest.mark.parametrize("wide", [False, True])
def test_round_trip(name, wide):
    model = random_model(build_spec(name, 64, 10, (1, 8, 8)), wide=wide)
    blob = encode_model(model)
    assert blob[:5] == b"PLMD\x01"
    back = decode_model(blob)
    assert encode_model(back) == blob and model_digest(back) == model_digest(model)
    assert back.weight_widths == model.weight_widths
    for a, b in zip(model.layers, back.layers):
        if hasattr(a, "weight"):
            assert a.weight.dtype == b.weight.dtype
            assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
            assert a.shift == b.shift


def test_known_layout():
    w = np.array([[1, -1, 2, -2], [0, 127, -128, 3], [4, 5, 6, 7]], dtype=np.int8)
    model = IntegerModel(
        TINY,
        (
            IntegerDense(w, np.array([1, -1, 256], dtype=np.int32), 3),
            ReLU(),
            IntegerDense(np.array([[1, 2, 3], [-1, -2, -3]], dtype=np.int16), np.zeros(2, np.int32), 0),
        ),
    )
    spec_bytes = model_spec_canonical_bytes(TINY)
    blob = encode_model(model)
    expected = (
        b"PLMD\x01" + len(spec_bytes).to_bytes(4, "big") + spec_bytes
        + b"\x01\x03" + w.tobytes() + bytes.fromhex("01000000" "ffffffff" "00010000")
        + b"\x02\x00" + bytes.fromhex("0100" "0200" "0300" "ffff" "feff" "fdff") + bytes(8)
    )
    assert blob == expected


def test_rejects_every_truncation_and_trailing_bytes():
    blob = encode_model(random_model(TINY))
    for cut in range(len(blob)):
        with pytest.raises(ModelFormatError):
            decode_model(blob[:cut])
    with pytest.raises(ModelFormatError, match="trailing"):
        decode_model(blob + b"\x00")


def test_rejects_garbage_and_bad_fields():
    rng = np.random.default_rng(0)
    for _ in range(50):
        with pytest.raises(ModelFormatError):
            decode_model(rng.bytes(int(rng.integers(0, 300))))
    blob = encode_model(random_model(TINY))
    spec_len = len(model_spec_canonical_bytes(TINY))
    first_layer = 9 + spec_len
    with pytest.raises(ModelFormatError, match="magic"):
        decode_model(b"PLMX" + blob[4:])
    with pytest.raises(ModelFormatError, match="version"):
        decode_model(blob[:4] + b"\x09" + blob[5:])
    with pytest.raises(ModelFormatError, match="width"):
        decode_model(blob[:first_layer] + b"\x04" + blob[first_layer + 1 :])
    with pytest.raises(ModelFormatError, match="shift"):
        decode_model(blob[:first_layer + 1] + b"\x3f" + blob[first_layer + 2 :])
    # a spec that is valid JSON but not canonical
    spaced = model_spec_canonical_bytes(TINY).replace(b",", b", ")
    with pytest.raises(ModelFormatError, match="canonical"):
        decode_model(b"PLMD\x01" + len(spaced).to_bytes(4, "big") + spaced + blob[first_layer:])
    # a spec whose shapes need more bytes than are there
    bigger = ModelSpec((4,), 2, (Dense(5), ReLU(), Dense(2)))
    bigger_bytes = model_spec_canonical_bytes(bigger)
    with pytest.raises(ModelFormatError, match="truncated"):
        decode_model(b"PLMD\x01" + len(bigger_bytes).to_bytes(4, "big") + bigger_bytes + blob[first_layer:])
    with pytest.raises(ModelFormatError, match="limit"):
        decode_model(blob + bytes(MAX_MODEL_BYTES))


def test_constructor_checks_shapes_against_spec():
    good = random_model(TINY)
    dense0, last = good.layers[0], good.layers[2]
    with pytest.raises(ModelFormatError, match="weight shape"):
        IntegerModel(TINY, (IntegerDense(dense0.weight[:, :3], dense0.bias, 0), ReLU(), last))
    with pytest.raises(ModelFormatError, match="bias"):
        IntegerModel(TINY, (IntegerDense(dense0.weight, dense0.bias.astype(np.int64), 0), ReLU(), last))
    with pytest.raises(ModelFormatError, match="int8 or int16"):
        IntegerModel(TINY, (IntegerDense(dense0.weight.astype(np.int32), dense0.bias, 0), ReLU(), last))
    with pytest.raises(ModelFormatError, match="shift"):
        IntegerModel(TINY, (IntegerDense(dense0.weight, dense0.bias, 63), ReLU(), last))
    with pytest.raises(ModelFormatError, match="does not match"):
        IntegerModel(TINY, (dense0, dense0, good.layers[2]))
    with pytest.raises(ModelFormatError, match="integer layers"):
        IntegerModel(TINY, (dense0,))


def test_architecture_check_against_task():
    model = random_model(TINY)
    check_model_matches_task(model, model_spec_digest(TINY))
    other = ModelSpec((4,), 2, (Dense(2),))
    with pytest.raises(ModelFormatError, match="architecture"):
        check_model_matches_task(model, model_spec_digest(other))


def test_evaluation_cost_is_bounded_before_any_work():
    import pytest

    from miner.integer_eval import MAX_EVALUATION_MACS, evaluation_macs
    from miner.model_spec import MAX_MACS_PER_SAMPLE, ModelSpecError, build_spec, Conv2d, Dense, Flatten, ModelSpec
    from miner.sml import model_sml

    mlp = build_spec("mlp", 64, 10, (1, 8, 8))
    dense = model_sml(bytes(32), bytes(20), mlp.input_shape, 64)
    assert evaluation_macs(mlp, dense, 1797) == 1797 * (128 * 64 + 128 * 64 + 64 * 10)
    assert evaluation_macs(mlp, dense, 1797) < MAX_EVALUATION_MACS // 50  # digits: cheap
    cnn = build_spec("cnn", 64, 10, (1, 8, 8))
    local = model_sml(bytes(32), bytes(20), cnn.input_shape, 64)  # counts its non-zeros only
    assert evaluation_macs(cnn, local, 1) == 8 * (36 * 9 + 24 * 6 + 4 * 4) + 8 * 8 * 64 * 9 + 128 * 10
    with pytest.raises(ModelSpecError, match="multiply-accumulates per sample"):
        ModelSpec(input_shape=(2, 16, 16), num_classes=10,
                  layers=(Conv2d(channels=256, kernel=1), Conv2d(channels=256, kernel=3), Conv2d(channels=1, kernel=1),
                          Flatten(), Dense(units=10)))
    assert MAX_MACS_PER_SAMPLE * 5_000 > MAX_EVALUATION_MACS  # big specs also meet the total cap
