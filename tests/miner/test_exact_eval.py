"""The fast evaluator (float64 BLAS products) equals the int64 reference bit for bit, at and
inside the model format's exactness bound; a model outside the bound is refused before any
evaluation (docs/ML.md, "Deterministic evaluation")."""

import subprocess
import sys

import numpy as np
import pytest

from miner import integer_eval
from miner.integer_eval import (
    ACTIVATION_MAX,
    ACTIVATION_MIN,
    conv2d,
    dense,
    integer_forward,
)
from miner.integer_model import (
    ACTIVATION_BOUND,
    EXACT_BOUND,
    IntegerConv2d,
    IntegerDense,
    IntegerModel,
    ModelFormatError,
    decode_model,
    encode_model,
)
from miner import products
from miner.model_spec import MAX_FAN_IN, Conv2d, Dense, Flatten, MaxPool2d, ModelSpec, ReLU, build_spec
from miner.sml import model_sml
from tests.miner import reference_eval
from tests.miner.test_integer_model import random_model

ANCHOR, MINER = bytes([3]) * 32, bytes([0x11]) * 20
W16 = (1 << 15) - 1  # a full row of these is inside the bound:
FULL_ROW = MAX_FAN_IN  # 16384 * 32767 * 2**24 + 2**31 < 2**53 <= 16384 * 32768 * 2**24


def python_dense(x, w, b, shift):
    out = []
    for row in x.tolist():
        out.append([])
        for weights, bias in zip(w.tolist(), b.tolist()):
            acc = sum(a * c for a, c in zip(row, weights)) + bias
            rounded = (acc + (1 << shift >> 1)) >> shift
            out[-1].append(min(max(rounded, ACTIVATION_MIN), ACTIVATION_MAX))
    return out


def test_the_bound_is_the_one_documented():
    assert ACTIVATION_BOUND == 1 << 24 and EXACT_BOUND == 1 << 53
    assert FULL_ROW * W16 * ACTIVATION_BOUND + (1 << 31) < EXACT_BOUND
    assert MAX_FAN_IN * (W16 + 1) * ACTIVATION_BOUND >= EXACT_BOUND
    assert MAX_FAN_IN * 128 * ACTIVATION_BOUND < EXACT_BOUND  # int8: always inside
    assert products.products_are_exact() and products.products_are_exact(on_torch=True)


def test_dense_at_the_bound_equals_python_integers():
    """Every weight at the largest int16 magnitude, every activation at +-2**24, the fan-in
    as large as the bound allows: partial sums reach 2**53 - 2**39."""
    rng = np.random.default_rng(0)
    x = np.empty((3, FULL_ROW), dtype=np.int64)
    x[0] = ACTIVATION_MAX
    x[1] = ACTIVATION_MIN
    x[2] = rng.choice([ACTIVATION_MIN, ACTIVATION_MAX], size=FULL_ROW)
    w = np.full((3, FULL_ROW), W16, dtype=np.int16)
    w[1] = -W16
    w[2, ::2] = -W16
    w[2, 1::7] = 1  # odd terms among the big ones: the low bits must survive
    b = np.array([(1 << 31) - 1, -(1 << 31), 12345], dtype=np.int32)
    IntegerModel(ModelSpec((FULL_ROW,), 3, (Dense(3),)), (IntegerDense(w, b, 0),))  # inside the bound
    for shift in (0, 1, 29, 62):
        got = dense(x, w, b, shift)
        assert got.tolist() == python_dense(x, w, b, shift)
        assert np.array_equal(got, reference_eval.dense(x, w, b, shift))
    raw = products.integer_matmul(x.astype(np.float64), w.astype(np.float64).T)
    assert int(np.abs(raw).max()) > EXACT_BOUND - (1 << 40)  # the test reaches the bound


def test_dense_random_int8_at_max_fan_in():
    rng = np.random.default_rng(1)
    x = rng.integers(ACTIVATION_MIN, ACTIVATION_MAX + 1, size=(5, MAX_FAN_IN))
    x[:, ::2] = ACTIVATION_MIN
    w = rng.integers(-128, 128, size=(7, MAX_FAN_IN)).astype(np.int8)
    w[0] = -128
    b = rng.integers(-(1 << 31), 1 << 31, size=7).astype(np.int32)
    for shift in (0, 7, 20):
        assert np.array_equal(dense(x, w, b, shift), reference_eval.dense(x, w, b, shift))


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv2d_at_the_bound_equals_the_reference(padding):
    """256 channels x 7 x 7 = 12544 inputs per output, all weights 32767, activations 2**24-1."""
    rng = np.random.default_rng(2)
    c, k = 256, 7
    x = np.full((2, c, 7, 8), ACTIVATION_MAX, dtype=np.int64)
    x[1] = rng.choice([ACTIVATION_MIN, ACTIVATION_MAX], size=(c, 7, 8))
    w = np.full((3, c, k, k), W16, dtype=np.int16)
    w[1] = rng.choice([-W16, W16], size=(c, k, k))
    w[2] = rng.integers(-W16, W16 + 1, size=(c, k, k))
    b = np.array([(1 << 31) - 1, -(1 << 31), 0], dtype=np.int32)
    for shift in (0, 30):
        assert np.array_equal(conv2d(x, w, b, shift, padding), reference_eval.conv2d(x, w, b, shift, padding))


MODELS = [
    ("logreg", (1, 8, 8)),
    ("mlp", (1, 8, 8)),
    ("cnn", (1, 8, 8)),
    ("cnn", (3, 5, 6)),
]


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("name, image", MODELS)
def test_whole_models_equal_the_reference_on_random_and_extreme_inputs(name, image, wide):
    d = int(np.prod(image))
    spec = build_spec(name, d, 10, image)
    sml = model_sml(ANCHOR, MINER, spec.input_shape, d)  # the cnn's: the local SML
    rng = np.random.default_rng(d)
    features = rng.integers(0, 256, size=(300, d))
    features[:10] = 255
    features[10:20] = 0
    features[20:30] = rng.choice([0, 255], size=(10, d))
    for seed in range(3):
        model = random_model(spec, seed, wide)
        assert np.array_equal(
            integer_forward(model, sml, features), reference_eval.reference_forward(model, sml, features)
        )


def saturating_cnn(c: int) -> IntegerModel:
    """conv -> relu -> pool -> conv -> flatten -> dense -> relu -> dense, every weight at the
    largest magnitude and shift 0, so every hidden activation saturates at +-2**24 and every
    next layer sums maximal products."""
    spec = ModelSpec(
        (c, 10, 10), 4,
        (Conv2d(8, 3, "same"), ReLU(), MaxPool2d(2), Conv2d(16, 5, "valid"), Flatten(),
         Dense(32), ReLU(), Dense(4)),
    )
    rng = np.random.default_rng(c)
    sign = lambda shape: rng.choice([-W16, W16], size=shape).astype(np.int16)  # noqa: E731
    layers = [
        IntegerConv2d(sign((8, c, 3, 3)), np.full(8, -(1 << 31), np.int32), 0, "same"),
        ReLU(), MaxPool2d(2),
        IntegerConv2d(sign((16, 8, 5, 5)), np.zeros(16, np.int32), 0, "valid"),
        Flatten(),
        IntegerDense(sign((32, 16)), np.full(32, (1 << 31) - 1, np.int32), 0), ReLU(),
        IntegerDense(sign((4, 32)), np.arange(4, dtype=np.int32), 3),
    ]
    layers[0].weight[0] = W16  # one channel that only saturates upwards
    return IntegerModel(spec, tuple(layers))


def test_saturated_activations_feed_maximal_products():
    model = saturating_cnn(2)
    rng = np.random.default_rng(9)
    inputs = rng.choice([0, (1 << 20) - 1], size=(64, 200))  # SML-sized inputs
    fast = integer_eval._forward(model, inputs.astype(np.int64))
    ref = reference_eval.reference_forward(model, None, inputs)
    assert np.array_equal(fast, ref)
    assert int(np.abs(ref).max()) > 0


@pytest.mark.parametrize("wide", [False, True])
def test_pooling_folded_into_a_conv_equals_pooling_after_it(wide):
    """The evaluator pools a conv's accumulator before requantising (`_steps`); the reference
    pools the requantised values. Pools right after a conv, after its ReLU, after a pool,
    with a leftover row, and a ReLU after a folded pool, on inputs with ties (0/255)."""
    spec = ModelSpec(
        (3, 9, 9), 5,
        (Conv2d(6, 3, "same"), MaxPool2d(2), ReLU(), Conv2d(5, 3, "same"), ReLU(), MaxPool2d(2),
         MaxPool2d(2), Conv2d(4, 1, "valid"), Flatten(), Dense(5)),
    )
    rng = np.random.default_rng(12)
    features = np.concatenate([rng.integers(0, 256, size=(60, 243)), rng.choice([0, 255], size=(20, 243))])
    for seed in range(4):
        model = random_model(spec, seed, wide)
        assert np.array_equal(
            integer_eval._forward(model, features), reference_eval.reference_forward(model, None, features)
        )
    assert [pool for _, _, pool in integer_eval._steps(model.layers)] == [2, 1, 2, 1, 1, 1, 1]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_int64_fallback_computes_the_same(monkeypatch, name):
    """Where a BLAS failed the self-check, numpy's int64 matmuls give the same logits: the
    dense SML and dense layers (mlp, numpy's BLAS), convolutions and dense layers (cnn,
    torch's)."""
    spec = build_spec(name, 64, 10, (1, 8, 8))
    sml = model_sml(ANCHOR, MINER, spec.input_shape, 64)
    model = random_model(spec, 5, True)
    features = np.random.default_rng(5).integers(0, 256, size=(50, 64))
    fast = integer_forward(model, sml, features)
    monkeypatch.setattr(products, "products_are_exact", lambda on_torch=False: False)
    assert np.array_equal(integer_forward(model, sml, features), fast)


def test_a_blob_outside_the_bound_is_refused_before_evaluation():
    spec = ModelSpec((MAX_FAN_IN,), 2, (Dense(2),))
    fine = IntegerModel(spec, (IntegerDense(np.ones((2, MAX_FAN_IN), np.int16), np.zeros(2, np.int32), 0),))
    blob = bytearray(encode_model(fine))
    weights_at = len(blob) - 2 * 4 - 2 * 2 * MAX_FAN_IN
    assert bytes(blob[weights_at : weights_at + 4]) == b"\x01\x00\x01\x00"
    # unit 1: every weight -32768 at fan-in 2**14: 2**14 * 2**15 * 2**24 = 2**53
    blob[weights_at + 2 * MAX_FAN_IN : weights_at + 4 * MAX_FAN_IN] = b"\x00\x80" * MAX_FAN_IN
    with pytest.raises(ModelFormatError, match=r"layer 0: unit 1 .*exactness bound 2\*\*53"):
        decode_model(bytes(blob))
    # one weight less keeps it inside
    blob[weights_at + 2 * MAX_FAN_IN : weights_at + 2 * MAX_FAN_IN + 2] = b"\x00\x00"
    assert decode_model(bytes(blob)).layers[0].weight[1].astype(int).sum() == -(1 << 15) * (MAX_FAN_IN - 1)
    # a conv row counts all c * k * k weights; the in-memory constructor refuses it too
    conv_spec = ModelSpec((256, 7, 7), 2, (Conv2d(2, 7, "same"), Flatten(), Dense(2)))
    big = np.full((2, 256, 7, 7), W16, np.int16)
    assert 256 * 49 * W16 * ACTIVATION_BOUND < EXACT_BOUND  # at 12544 inputs, still inside
    IntegerModel(conv_spec, (IntegerConv2d(big, np.zeros(2, np.int32), 0, "same"), Flatten(),
                             IntegerDense(np.ones((2, 98), np.int8), np.zeros(2, np.int32), 0)))
    with pytest.raises(ModelFormatError, match="exactness bound"):
        IntegerModel(spec, (IntegerDense(np.full((2, MAX_FAN_IN), -(1 << 15), np.int16),
                                         np.zeros(2, np.int32), 0),))


def test_only_a_model_with_convolutions_loads_torch():
    """A node verifying MLP tasks keeps numpy's BLAS alone (miner/products.py: torch costs a
    process 1 s and 280 MB, and two BLAS pools in one process fight); a CNN's evaluation runs
    entirely on torch's."""
    script = (
        "import sys, numpy as np\n"
        "from miner.integer_eval import integer_forward\n"
        "from miner.model_spec import build_spec\n"
        "from miner.sml import model_sml\n"
        "from tests.miner.test_integer_model import random_model\n"
        "for name in ('mlp', 'cnn'):\n"
        "    spec = build_spec(name, 64, 10, (1, 8, 8))\n"
        "    sml = model_sml(bytes(32), bytes(20), spec.input_shape, 64)\n"
        "    integer_forward(random_model(spec, 1, False), sml, np.zeros((5, 64), int))\n"
        "    print(name, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["mlp", "False", "cnn", "True"]
