"""The exact integer products of the consensus evaluation and the SML (consensus-critical).

Every matrix product of an evaluation is computed here: float64 (or, for the SML, float32)
GEMMs of integer-valued operands, exact in any order of additions, with or without FMA,
because the model format bounds every partial sum below 2**53 (2**24 for the SML's float32;
proof in docs/ML.md, "Deterministic evaluation"). A GEMM is a plain sum of products per
output; there is no FFT or Winograd anywhere (their intermediate values are not integers).

Two BLAS libraries, one per evaluation:
- numpy's (OpenBLAS in its wheel) for models without convolutions and for the SML: on this
  machine it is the faster for large dense GEMMs (23 GMAC/s against torch's MKL at 18, one
  thread), and a node verifying MLP tasks never loads torch (1 s and 280 MB a process);
- torch's for every product of a model with convolutions: a convolution is a sum of GEMMs,
  one per kernel offset, each reading a window of the padded input in place, and BLAS adds
  each into the accumulator as it computes it (beta = 1, torch's addmm_). numpy's matmul has
  no beta: an unfold or an extra pass per offset, which cost as much as the products
  themselves (bench.verify_scale: cnn_vs_blas 0.55-0.69 with the unfold).
Never both in one evaluation: two BLAS thread pools in one process fight. With the
convolutions on torch and the dense layers on numpy, 2 threads each on 2 cores, a LeNet over
10,000 samples took 12.6-13.4 s instead of 0.9-1.0 s (OpenBLAS threads keep spinning after a
call, on the cores torch's threads then wait for).

Before a library's first product, `products_are_exact(on_torch)` checks it against int64 on
operands at the bounds; should a BLAS ever fail it (none known does), numpy's int64 matmul
(exact, no BLAS, several times slower) computes the same integers instead.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

_log = logging.getLogger("pole.evaluator")

Terms = list[tuple[np.ndarray, np.ndarray]]


@functools.cache
def products_are_exact(on_torch: bool = False) -> bool:
    """The library's GEMMs give int64 matmul's integers on operands at the bounds: a float64
    product, and a float32 one at the SML's bound (numpy) or the float64 sum accumulated over
    three GEMMs whose right operand is a strided window, as a convolution issues them (torch).
    Checked once per process and library."""
    from miner.integer_model import ACTIVATION_BOUND  # here, not above: the SML imports this module
    from miner.model_spec import MAX_FAN_IN

    rng = np.random.default_rng(53)
    fan_in = MAX_FAN_IN // 2  # with these magnitudes, partial sums reach 2**52
    a = rng.choice([-ACTIVATION_BOUND, ACTIVATION_BOUND - 1], size=(24, fan_in))
    a[:, ::3] = rng.integers(-ACTIVATION_BOUND, ACTIVATION_BOUND, size=a[:, ::3].shape)
    w = rng.choice([-(1 << 15), (1 << 15) - 1], size=(20, fan_in))
    w[:, 0] = 1  # an odd term next to 2**52-sized sums
    exact = w @ a.T  # int64, numpy's own loop
    if on_torch:
        rows = np.zeros((fan_in, 32))  # the activations as rows of a longer array
        rows[:, :24] = a.T
        cut = np.linspace(0, fan_in, 4).astype(int)
        terms = [(w[:, lo:hi].astype(np.float64), rows[lo:hi, :24]) for lo, hi in zip(cut, cut[1:])]
        ok = np.array_equal(_torch_products(w.astype(np.float64), a.T.astype(np.float64)), exact) and (
            np.array_equal(_torch_accumulate(terms, np.empty(exact.shape)), exact))
    else:
        features = rng.choice([0, 255], size=(16, 4096))  # the SML: 0..255 times +-1, sums < 2**20
        signs = rng.choice([-1, 1], size=(4096, 8))
        ok = np.array_equal(w.astype(np.float64) @ a.T.astype(np.float64), exact) and (
            np.array_equal(features.astype(np.float32) @ signs.astype(np.float32), features @ signs))
    if not ok:
        _log.warning("%s BLAS is not exact on integers; evaluating with int64 matmul", "torch's" if on_torch else "numpy's")
    return bool(ok)


def exact_products(a: np.ndarray, b: np.ndarray, on_torch: bool = False) -> np.ndarray:
    """a @ b of integer-valued float64 or float32 arrays within their exactness bound: in
    that dtype, or int64 where the library's BLAS failed the self-check."""
    if not products_are_exact(on_torch):
        return np.matmul(a.astype(np.int64), b.astype(np.int64))
    return _torch_products(a, b) if on_torch else np.matmul(a, b)


def integer_matmul(a: np.ndarray, b: np.ndarray, on_torch: bool = False) -> np.ndarray:
    """a @ b for integer-valued float64 arrays within the exactness bound -> int64, exact."""
    return exact_products(a, b, on_torch).astype(np.int64, copy=False)


def accumulate_products(terms: Terms, out: np.ndarray) -> np.ndarray:
    """out = the sum of a @ b over the terms, as float64 holding integers (out is float64), on
    torch. Each b may be a strided matrix (rows of a longer array, unit column stride): BLAS
    reads it in place."""
    if products_are_exact(on_torch=True):
        return _torch_accumulate(terms, out)
    out[...] = sum(np.matmul(a.astype(np.int64), b.astype(np.int64)) for a, b in terms)  # < 2**53: exact
    return out


def _torch_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import torch  # here: a process that evaluates no convolution never loads it

    return torch.mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _torch_accumulate(terms: Terms, out: np.ndarray) -> np.ndarray:
    import torch

    acc = torch.from_numpy(out)
    (a, b), rest = terms[0], terms[1:]
    torch.mm(torch.from_numpy(a), torch.from_numpy(b), out=acc)
    for a, b in rest:
        acc.addmm_(torch.from_numpy(a), torch.from_numpy(b))
    return out
