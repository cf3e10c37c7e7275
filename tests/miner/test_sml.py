import numpy as np
import pytest
import torch
from eth_utils import keccak

from miner.sml import (
    MAX_SML_INPUT_DIM,
    SML,
    SML_EXPANSION,
    identity_mapping,
    output_shift_for,
    sml_for,
    sml_seed,
    ternary_matrix,
)

PARENT = bytes(range(32))
MINER = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")  # dev account 0


def reference_matrix(seed: bytes, rows: int, cols: int) -> list[list[int]]:
    """The construction written out byte by byte, independently of sml.py."""
    entries, counter = [], 0
    while len(entries) < rows * cols:
        for byte in keccak(seed + counter.to_bytes(8, "big")):
            if byte < 252 and len(entries) < rows * cols:
                entries.append({0: 1, 1: -1}.get(byte % 6, 0))
        counter += 1
    return [entries[r * cols : (r + 1) * cols] for r in range(rows)]


def test_known_vector():
    assert sml_seed(PARENT, MINER).hex() == (
        "f1646c5adee98d9ff0e920012245b715998fe768cd41dccf84493f100021b6e1"
    )
    sml = sml_for(PARENT, MINER, 64)
    assert sml.matrix.shape == (128, 64) and sml.matrix.dtype == np.int8
    assert sml.matrix_digest().hex() == (
        "91aead108d247af45b86835f67da26a13035fb6a2697abc542119f5670c9f012"
    )
    assert sml.matrix[0, :8].tolist() == [0, 0, 1, 0, 0, -1, 1, 1]
    assert sml_for(PARENT, MINER, 3).matrix.tolist() == [
        [0, 0, 1], [0, 0, -1], [1, 1, 0], [0, -1, 0], [1, 0, 0], [0, 0, 0]
    ]


@pytest.mark.parametrize("rows, cols", [(6, 3), (128, 64), (61, 67)])
def test_matches_reference_construction(rows, cols):
    seed = sml_seed(PARENT, MINER)
    assert ternary_matrix(seed, rows, cols).tolist() == reference_matrix(seed, rows, cols)


def test_entry_distribution():
    matrix = sml_for(PARENT, MINER, 256).matrix
    assert matrix.shape == (SML_EXPANSION * 256, 256)
    for value, share in ((1, 1 / 6), (-1, 1 / 6), (0, 2 / 3)):
        assert abs(np.mean(matrix == value) - share) < 0.01


def test_differs_by_parent_and_by_miner():
    base = sml_for(PARENT, MINER, 64).matrix_digest()
    other_parent = bytes(31) + b"\x01"
    other_miner = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
    assert sml_for(other_parent, MINER, 64).matrix_digest() != base
    assert sml_for(PARENT, other_miner, 64).matrix_digest() != base
    assert sml_seed(PARENT, MINER) != sml_seed(MINER + bytes(12), PARENT[:20])


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="anchor hash"):
        sml_for(PARENT[:31], MINER, 64)
    with pytest.raises(ValueError, match="miner"):
        sml_for(PARENT, MINER + b"\x00", 64)
    with pytest.raises(ValueError, match="dimension"):
        sml_for(PARENT, MINER, 0)
    sml = sml_for(PARENT, MINER, 4)
    with pytest.raises(TypeError):
        sml.apply_int(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(ValueError):
        sml.apply_int(np.zeros((1, 5), dtype=np.int64))
    for outside in (-1, 256):  # the exactness of the float32 product rests on 0..255
        with pytest.raises(ValueError, match="0..255"):
            sml.apply_int(np.array([[0, 1, outside, 2]]))


def test_apply_int_is_exact_at_its_bounds():
    """The widest SML input, every feature 255 and rows of one sign: partial sums up to
    255 * 4096, next to odd terms, against numpy's int64 matmul (no BLAS)."""
    d = MAX_SML_INPUT_DIM
    rng = np.random.default_rng(24)
    matrix = np.concatenate([
        np.ones((1, d)), -np.ones((1, d)), np.tile([1, -1], (1, d // 2)),
        rng.choice([-1, 0, 1], size=(13, d)),
    ]).astype(np.int8)
    matrix[0, 0] = 0  # an odd partial sum next to the largest ones
    features = np.concatenate([
        np.full((2, d), 255), rng.integers(0, 256, size=(6, d)), rng.choice([254, 255], size=(2, d)),
    ])
    sml = SML(matrix=matrix, output_shift=output_shift_for(d))
    expected = np.maximum(features @ matrix.astype(np.int64).T, 0)
    assert expected.max() == 255 * (d - 1)
    assert np.array_equal(sml.apply_int(features), expected)


def test_apply_int_is_relu_of_projection():
    sml = sml_for(PARENT, MINER, 64)
    x = np.random.default_rng(0).integers(0, 256, size=(10, 64))
    out = sml.apply_int(x)
    assert out.dtype == np.int64 and out.shape == (10, 128)
    expected = [[max(0, sum(int(s) * int(v) for s, v in zip(row, xi))) for row in sml.matrix] for xi in x]
    assert out.tolist() == expected


@pytest.mark.parametrize("threads", [1, 2])
def test_torch_layer_is_exact_in_float32(threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sml = sml_for(PARENT, MINER, 512)
        rng = np.random.default_rng(1)
        x = np.concatenate(
            [rng.integers(0, 256, size=(64, 512)), np.full((1, 512), 255), np.zeros((1, 512), int)]
        )
        with torch.no_grad():
            out = sml.as_torch_layer()(torch.from_numpy(x.astype(np.float32)))
        assert out.dtype == torch.float32
        assert np.array_equal(out.numpy().astype(np.int64), sml.apply_int(x))
        assert np.array_equal(sml.apply_float(x), np.ldexp(out.numpy(), -sml.output_shift))
        assert all(not p.requires_grad for p in sml.as_torch_layer().parameters())
    finally:
        torch.set_num_threads(previous)


def test_output_shift_and_identity():
    assert [output_shift_for(d) for d in (1, 4, 13, 30, 64, 4096)] == [6, 7, 8, 9, 9, 12]
    ident = identity_mapping(5)
    x = np.array([[0, 1, 2, 3, 255]])
    assert ident.apply_int(x).tolist() == x.tolist()
