import numpy as np
import pytest
import torch

from miner import integer_eval
from miner.datasets import Dataset, load_builtin, split_dataset
from miner.integer_eval import (
    IncompatibleModelError,
    accuracy_bps,
    argmax_lowest,
    conv2d,
    dense,
    evaluate_integer_model,
    flatten,
    integer_forward,
    integer_logits,
    maxpool2d,
    predict,
    relu,
    round_shift,
    saturate,
)
from miner.integer_model import IntegerDense, IntegerModel
from miner.model_spec import Dense, ModelSpec, build_spec
from miner.sml import model_sml, sml_for
from miner.training import Hyperparams, evaluate_float_model, model_inputs, train_model

PARENT_A, MINER_A = bytes([1]) * 32, bytes([0xAA]) * 20
MINER_B = bytes([0xBB]) * 20


# --- the pure functions ------------------------------------------------------------------


def test_round_shift_rounds_half_up():
    x = np.arange(-9, 10, dtype=np.int64)
    for shift in (0, 1, 2, 3):
        expected = [(int(v) + (1 << shift >> 1)) // (1 << shift) for v in x]
        assert round_shift(x, shift).tolist() == expected
    assert round_shift(np.array([-3, -1, 1, 3]), 1).tolist() == [-1, 0, 1, 2]


def test_saturate_and_relu():
    x = np.array([-(1 << 40), -(1 << 24) - 1, -5, 0, 7, 1 << 24, 1 << 40], dtype=np.int64)
    assert saturate(x).tolist() == [-(1 << 24), -(1 << 24), -5, 0, 7, (1 << 24) - 1, (1 << 24) - 1]
    assert relu(x).tolist() == [0, 0, 0, 0, 7, 1 << 24, 1 << 40]


def test_dense_matches_python_integers_at_the_exactness_bound():
    fan_in = 16384  # model_spec.MAX_FAN_IN
    x = np.full((2, fan_in), -(1 << 24), dtype=np.int64)  # the activation bound
    x[1] = (1 << 24) - 1
    w = np.full((2, fan_in), -((1 << 15) - 1), dtype=np.int16)
    w[1, ::2] = (1 << 15) - 1
    b = np.array([(1 << 31) - 1, -(1 << 31)], dtype=np.int32)
    for shift in (0, 30, 62):
        out = dense(x, w, b, shift)
        for i in range(2):
            for j in range(2):
                acc = sum(int(a) * int(c) for a, c in zip(x[i], w[j])) + int(b[j])
                rounded = (acc + (1 << shift >> 1)) >> shift
                assert out[i, j] == min(max(rounded, -(1 << 24)), (1 << 24) - 1)


@pytest.mark.parametrize("padding, kernel", [("same", 3), ("same", 1), ("valid", 3), ("same", 5)])
def test_conv2d_matches_torch(padding, kernel):
    rng = np.random.default_rng(kernel)
    x = rng.integers(-50, 50, size=(3, 2, 6, 7))
    w = rng.integers(-128, 128, size=(4, 2, kernel, kernel)).astype(np.int8)
    b = rng.integers(-1000, 1000, size=4).astype(np.int32)
    reference = torch.nn.functional.conv2d(
        torch.from_numpy(x.astype(np.float64)),
        torch.from_numpy(w.astype(np.float64)),
        torch.from_numpy(b.astype(np.float64)),
        padding=kernel // 2 if padding == "same" else 0,
    ).numpy().astype(np.int64)  # exact: all values are small integers
    assert np.array_equal(conv2d(x, w, b, 0, padding), reference)
    assert np.array_equal(conv2d(x, w, b, 4, padding), round_shift(reference, 4))


def test_maxpool_and_flatten_match_torch():
    x = np.random.default_rng(0).integers(-100, 100, size=(2, 3, 5, 4))
    reference = torch.nn.functional.max_pool2d(torch.from_numpy(x.astype(np.float64)), 2)
    assert np.array_equal(maxpool2d(x, 2), reference.numpy().astype(np.int64))
    assert np.array_equal(flatten(x), torch.flatten(torch.from_numpy(x), 1).numpy())


def test_argmax_ties_go_to_lowest_class():
    logits = np.array([[3, 5, 5, 1], [7, 7, 7, 7], [-1, -2, -1, -3]])
    assert argmax_lowest(logits).tolist() == [1, 0, 0]


# --- whole models -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_split():
    return split_dataset(load_builtin("digits"), 0.25, seed=0)


@pytest.fixture(scope="module")
def trained(digits_split):
    train, _ = digits_split
    out = {}
    for name, epochs in (("mlp", 15), ("cnn", 6)):
        spec = build_spec(name, train.d, train.num_classes, train.image_shape)
        sml = model_sml(PARENT_A, MINER_A, spec.input_shape, train.d)
        result = train_model(
            spec, train, sml, target_train_bps=None, time_limit_s=60, seed=0,
            hyperparams=Hyperparams(max_epochs=epochs),
        )
        out[name] = (spec, sml, result)
    return out


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_integer_model_agrees_with_float_model(trained, digits_split, name):
    _, test = digits_split
    spec, sml, result = trained[name]
    integer_bps = evaluate_integer_model(result.integer_model, sml, test)
    float_bps = evaluate_float_model(result.float_model, spec, sml, test)
    assert integer_bps > 9000
    assert abs(integer_bps - float_bps) <= 150
    with torch.no_grad():
        float_predictions = result.float_model(model_inputs(spec, sml, test)).argmax(1).numpy()
    agreement = np.mean(float_predictions == predict(result.integer_model, sml, test.features))
    assert agreement >= 0.98


def test_copied_model_fails_under_another_miners_sml(trained, digits_split):
    _, test = digits_split
    _, sml_a, result = trained["mlp"]
    sml_b = sml_for(PARENT_A, MINER_B, test.d)
    sml_next_block = sml_for(bytes([2]) * 32, MINER_A, test.d)
    own = evaluate_integer_model(result.integer_model, sml_a, test)
    copied = evaluate_integer_model(result.integer_model, sml_b, test)
    early = evaluate_integer_model(result.integer_model, sml_next_block, test)
    assert own > 9000
    assert copied < 5000 and early < 5000


def test_batching_does_not_change_results(trained, digits_split, monkeypatch):
    _, test = digits_split
    _, sml, result = trained["cnn"]
    full = integer_logits(result.integer_model, sml, test.features)
    monkeypatch.setattr(integer_eval, "EVAL_BATCH", 7)
    assert np.array_equal(integer_logits(result.integer_model, sml, test.features), full)


def test_rejects_incompatible_model():
    spec = ModelSpec((8,), 2, (Dense(2),))
    model = IntegerModel(spec, (IntegerDense(np.ones((2, 8), np.int8), np.zeros(2, np.int32), 0),))
    sml4, sml5 = sml_for(PARENT_A, MINER_A, 4), sml_for(PARENT_A, MINER_A, 5)
    data = Dataset(np.ones((3, 4), np.int64), [0, 1, 0], num_classes=2)
    assert evaluate_integer_model(model, sml4, data) == 6666  # equal logits: ties go to class 0
    with pytest.raises(IncompatibleModelError, match="SML gives"):
        evaluate_integer_model(model, sml5, data)
    with pytest.raises(IncompatibleModelError, match="features"):
        evaluate_integer_model(model, sml4, Dataset(np.ones((3, 5), np.int64), [0, 1, 0], 2))
    with pytest.raises(IncompatibleModelError, match="classes"):
        evaluate_integer_model(model, sml4, Dataset(np.ones((3, 4), np.int64), [0, 1, 2], 3))


def test_consensus_bounds_the_cost_and_the_shared_forward_pass_computes_the_same(
    trained, digits_split, monkeypatch
):
    """integer_logits = the cost limit + integer_forward, the one forward pass the delivered
    torch module also runs (pole_chain/clients/model_delivery.py)."""
    _, test = digits_split
    _, sml, result = trained["mlp"]
    logits = integer_logits(result.integer_model, sml, test.features)
    assert np.array_equal(integer_forward(result.integer_model, sml, test.features), logits)
    monkeypatch.setattr(integer_eval, "MAX_EVALUATION_MACS", 1000)
    with pytest.raises(IncompatibleModelError, match="multiply-accumulates"):
        integer_logits(result.integer_model, sml, test.features)
    assert np.array_equal(integer_forward(result.integer_model, sml, test.features), logits)


def test_accuracy_is_floored_basis_points():
    assert accuracy_bps(np.array([1, 2, 3]), np.array([1, 2, 0])) == 6666
    assert accuracy_bps(np.array([0] * 7), np.zeros(7, np.uint8)) == 10000
