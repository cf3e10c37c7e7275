"""The local SML of image models: its construction, its exact fast product, which models get
it, and that a model trained behind one miner's map is worthless behind another's."""
import numpy as np
import pytest
from eth_utils import keccak

from miner.datasets import load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model
from miner.model_spec import build_spec
from miner.sml import (
    LOCAL_SML_EXPANSION,
    MAX_LOCAL_SML_ROWS,
    SML,
    LocalSML,
    SMLShapeError,
    check_sml_fits,
    model_sml,
    sml_for,
    sml_of_matrix,
    sml_seed,
)
from miner.training import Hyperparams, train_model

ANCHOR = bytes(range(32))
MINER = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")  # dev account 0
COPIER = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")  # dev account 1


def reference_local_matrix(seed: bytes, expansion: int, c: int, h: int, w: int) -> list[list[int]]:
    """The construction written out row by row, independently of sml.py: the stream's bits,
    most significant first, give the signs of each row's window taps in column order."""
    stream = b"".join(keccak(seed + i.to_bytes(8, "big")) for i in range(64))
    bits = iter(int(bit) for byte in stream for bit in f"{byte:08b}")
    rows = []
    for row in range(expansion * c * h * w):
        y, x = divmod(row % (h * w), w)
        entries = [0] * (c * h * w)
        for column in range(c * h * w):
            qy, qx = divmod(column % (h * w), w)
            if abs(qy - y) <= 1 and abs(qx - x) <= 1:
                entries[column] = 1 if next(bits) else -1
        rows.append(entries)
    return rows


@pytest.mark.parametrize("layout", [(2, 1, 3, 3), (3, 2, 4, 5), (2, 1, 1, 6)])
def test_matches_reference_construction(layout):
    expansion, c, h, w = layout
    sml = model_sml(ANCHOR, MINER, (expansion * c, h, w), c * h * w)
    assert isinstance(sml, LocalSML)
    assert sml.matrix.tolist() == reference_local_matrix(sml_seed(ANCHOR, MINER), *layout)


def test_known_vector_for_digits():
    """The built-in cnn on 8x8 digits: pinned, so a change of the construction is seen."""
    sml = model_sml(ANCHOR, MINER, (LOCAL_SML_EXPANSION, 8, 8), 64)
    assert sml.matrix.shape == (512, 64) and sml.output_shift == 8
    assert sml.macs_per_sample == LOCAL_SML_EXPANSION * (36 * 9 + 24 * 6 + 4 * 4)
    assert sml.matrix_digest().hex() == (
        "c2ed3494e216c39a71e975f3d662adeefe2ca3327e3ed109fa29b485ffb3bec3"
    )


def test_differs_by_anchor_and_by_miner():
    digest = model_sml(ANCHOR, MINER, (8, 8, 8), 64).matrix_digest()
    assert model_sml(bytes(31) + b"\x01", MINER, (8, 8, 8), 64).matrix_digest() != digest
    assert model_sml(ANCHOR, COPIER, (8, 8, 8), 64).matrix_digest() != digest


@pytest.mark.parametrize("layout", [(8, 1, 8, 8), (2, 3, 5, 7), (8, 1, 28, 28), (2, 4, 4, 4)])
def test_fast_product_equals_the_dense_one_bit_for_bit(layout):
    """Nine shifted multiply-adds per channel against the dense float32 product, on random
    features and on the extremes (all 255: the largest sums; a lone 255: one tap)."""
    expansion, c, h, w = layout
    d = c * h * w
    local = model_sml(ANCHOR, MINER, (expansion * c, h, w), d)
    rng = np.random.default_rng(11)
    lone = np.zeros((1, d), dtype=np.int64)
    lone[0, d // 2] = 255
    features = np.concatenate([
        rng.integers(0, 256, size=(150, d)), np.full((2, d), 255), np.zeros((1, d), int), lone,
    ])
    expected = np.maximum(features @ local.matrix.astype(np.int64).T, 0)
    assert np.array_equal(local.apply_int(features), expected)
    assert np.array_equal(SML(local.matrix, local.output_shift).apply_int(features), expected)
    assert expected.max() > 0 and local.apply_int(features[:0]).shape == (0, local.out_dim)


def test_rows_are_signed_windows():
    sml = model_sml(ANCHOR, MINER, (2, 5, 5), 25)
    for row, entries in enumerate(sml.matrix):
        y, x = divmod(row % 25, 5)
        window = {(qy, qx) for qy in range(y - 1, y + 2) for qx in range(x - 1, x + 2)
                  if 0 <= qy < 5 and 0 <= qx < 5}
        assert {divmod(int(q), 5) for q in np.flatnonzero(entries)} == window
        assert set(entries[entries != 0].tolist()) <= {-1, 1}
    # the signs are balanced: half +1
    assert abs(np.mean(sml.matrix[sml.matrix != 0] == 1) - 0.5) < 0.1


def test_which_models_get_which_sml():
    flat = model_sml(ANCHOR, MINER, (128,), 64)
    assert type(flat) is SML and flat.matrix_digest() == sml_for(ANCHOR, MINER, 64).matrix_digest()
    assert isinstance(model_sml(ANCHOR, MINER, (16, 8, 8), 128), LocalSML)  # c = 2, E = 8
    for shape, d, reason in [
        ((100,), 64, "gives 128"),
        ((1, 8, 8), 64, "E in 2..8"),  # E = 1: no more rows than inputs
        ((9, 8, 8), 64, "E in 2..8"),
        ((3, 8, 8), 128, "E in 2..8"),  # 3 is not a multiple of c = 2
        ((8, 7, 7), 64, "not a multiple of 49"),
        ((16, 28, 28), 784, "E in 2..8"),
        ((6, 40, 40), 3200, f"9600 outputs exceeds {MAX_LOCAL_SML_ROWS}"),
        ((128,), 0, "outside"),
    ]:
        with pytest.raises(SMLShapeError, match=reason):
            check_sml_fits(shape, d)
        with pytest.raises(SMLShapeError):
            model_sml(ANCHOR, MINER, shape, d)


def test_a_kept_matrix_rebuilds_an_sml_with_the_same_outputs():
    local = model_sml(ANCHOR, MINER, (8, 8, 8), 64)
    rebuilt = sml_of_matrix(local.matrix.copy(), (8, 8, 8), 64)
    x = np.random.default_rng(3).integers(0, 256, size=(20, 64))
    assert np.array_equal(rebuilt.apply_int(x), local.apply_int(x))
    assert rebuilt.output_shift == local.output_shift and not rebuilt.matrix.flags.writeable


def test_a_cnn_trained_behind_one_miners_local_sml_fails_behind_anothers():
    """Non-invertible in the same sense as the dense SML: the copier's map differs in every
    sign, so the copied model scores near chance (bench.sml_cost: at most 26 % over five
    seeds at 50 epochs) while its owner's scores above 90 %."""
    data = load_builtin("digits")
    train, test = split_dataset(data, 0.2, 0)
    spec = build_spec("cnn", data.d, data.num_classes, data.image_shape)
    owner = model_sml(ANCHOR, MINER, spec.input_shape, data.d)
    copier = model_sml(ANCHOR, COPIER, spec.input_shape, data.d)
    trained = train_model(spec, train, owner, target_train_bps=None, time_limit_s=600, seed=0,
                          hyperparams=Hyperparams(max_epochs=15))
    assert evaluate_integer_model(trained.integer_model, owner, test) > 9_000
    assert evaluate_integer_model(trained.integer_model, copier, test) < 5_000
