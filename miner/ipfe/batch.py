"""The batch API the protocol plugs in: encrypt a dataset, derive a miner's SML keys, decrypt a
miner's SML projections of the whole dataset.

    data node                                   miner
    mpk, msk = setup(d)
    blob = encrypt_dataset(msk, X).to_bytes()   (published with mpk)
                     ... the task's anchor block exists ...
    keys = sml_keys(msk, anchor, miner)         (signed and sent by the protocol layer)
                                                P = decrypt_projections(batch, keys, table)
                                                relu(P) == sml_for(anchor, miner, d).apply_int(X)

Cost per sample (n features, k rows): encryption is n + 1 fixed-base multiplications (the data
node knows s, so ct_i = (r s_i + x_i) g directly); decryption is n negations, then per row one
sum of the row's +-1 points (one coincurve combine_keys call: no scalar multiplication) plus
one scalar multiplication (-sk) ct_0 inside the same sum, then one vectorised table lookup for
the whole batch.

Bound. Features lie in 0..max_feature, so for a row y, <x, y> lies in
[-max_feature * sum(|y_i| : y_i < 0), max_feature * sum(y_i : y_i > 0)]: check_bound computes
the largest magnitude over a set of rows and refuses it above the table's bound. For any
ternary row over n features the magnitude is at most n * max_feature (ternary_bound): digits,
64 features of 0..255, need at most 64 * 255 = 16,320, whatever the anchor and the miner,
so one table of 16,320 baby steps (783 KB) serves every digits task with a single lookup.
An SML row has about n/6 entries of each sign (digits: about 10.7), so typical magnitudes are
a few thousand; the bound is the worst case, not the typical one.
"""

from __future__ import annotations

import secrets
from typing import Sequence

import numpy as np
from tqdm import tqdm

from .dlog import MAX_DLOG_BOUND, DlogTable
from .errors import IPFEBoundError, IPFEDecryptError, IPFEFormatError
from .group import Group
from .scheme import (
    MAX_BATCH,
    Ciphertext,
    CiphertextBatch,
    FunctionalKeys,
    MasterPublicKey,
    MasterSecretKey,
    derive_keys,
)

DEFAULT_MAX_FEATURE = 255  # miner.datasets.MAX_FEATURE_VALUE


def ternary_bound(n_features: int, max_feature: int = DEFAULT_MAX_FEATURE) -> int:
    """The largest |<x, y>| for any ternary row y (entries -1, 0, +1) and x in
    0..max_feature: n_features * max_feature (all entries of one sign)."""
    if n_features < 1 or max_feature < 0:
        raise ValueError("n_features must be >= 1 and max_feature >= 0")
    return n_features * max_feature


def check_task(n_features: int, max_feature: int = DEFAULT_MAX_FEATURE,
               table_bound: int = MAX_DLOG_BOUND) -> int:
    """Before the rows exist (a task being posted): the bound every ternary SML row of the task
    stays within (ternary_bound); IPFEBoundError if it exceeds `table_bound`."""
    need = ternary_bound(n_features, max_feature)
    if need > table_bound:
        raise IPFEBoundError(
            f"{n_features} features of 0..{max_feature} need a discrete-log bound of {need}, "
            f"above the {table_bound} the table covers"
        )
    return need


def check_bound(n_features: int, max_feature: int, rows, table_bound: int = MAX_DLOG_BOUND) -> int:
    """The largest |<x, y>| over the rows y of `rows` (k, n_features) and all x in
    0..max_feature; IPFEBoundError if it exceeds `table_bound` (default: the largest table this
    package builds, MAX_DLOG_BOUND). Returns that magnitude."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != n_features or rows.dtype.kind not in "iu":
        raise IPFEBoundError(f"rows must be integers of shape (k, {n_features}), got {rows.shape}")
    if max_feature < 0:
        raise IPFEBoundError("max_feature must be >= 0")
    r = rows.astype(np.int64)
    positive = np.where(r > 0, r, 0).sum(axis=1)
    negative = np.where(r < 0, -r, 0).sum(axis=1)
    need = int(max(positive.max(initial=0), negative.max(initial=0))) * int(max_feature)
    if need > table_bound:
        raise IPFEBoundError(
            f"inner products of these rows with features 0..{max_feature} reach {need}, "
            f"above the discrete-log bound {table_bound}"
        )
    return need


# --- encryption ------------------------------------------------------------------------------


def _features(features, n: int) -> np.ndarray:
    x = np.asarray(features)
    if x.dtype.kind not in "iu":
        raise IPFEFormatError(f"features must be integers, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != n:
        raise IPFEFormatError(f"features must have shape (N, {n}), got {x.shape}")
    if not 1 <= x.shape[0] <= MAX_BATCH:
        raise IPFEFormatError(f"{x.shape[0]} samples outside 1..{MAX_BATCH}")
    return x.astype(np.int64)


def encrypt_dataset(
    key: MasterSecretKey | MasterPublicKey,
    features,
    *,
    progress: bool = False,
    randomness: Sequence[int] | None = None,
    workers: int = 1,
) -> CiphertextBatch:
    """One ciphertext per sample (row of `features`, N x n integers), each with a fresh r
    (a shared r would let anyone divide two ciphertexts and read x - x' by a small discrete
    log). With the master secret key (the data node) each entry is one fixed-base
    multiplication; with only the public key, one variable-base multiplication and an addition.
    Both give the same ciphertext for the same r. `randomness` (N values in 1..q-1) is for
    tests only. `workers` > 1 splits the samples over that many processes."""
    secret = isinstance(key, MasterSecretKey)
    mpk = key.public_key if secret else key
    group = key.group
    q = group.order
    x = _features(features, key.n)
    if randomness is not None and len(randomness) != x.shape[0]:
        raise ValueError("one randomness value per sample")
    if workers > 1 and x.shape[0] > 1:
        if randomness is None:
            randomness = [secrets.randbelow(q - 1) + 1 for _ in range(x.shape[0])]
        chunks = _chunks(x.shape[0], workers)
        jobs = [(group.backend, key.to_bytes(), secret, x[a:b], list(randomness[a:b])) for a, b in chunks]
        bodies = _run_pool(_encrypt_chunk, jobs, workers, progress, "IPFE encrypt", x.shape[0], chunks)
        data = b"".join(bodies)
        size = (key.n + 1) * group.element_size
        from .scheme import _decode_body

        items = tuple(_decode_body(group, data, i * size, key.n) for i in range(x.shape[0]))
        return CiphertextBatch(group, mpk.digest, items)
    small = [group.mul_gen(v) for v in range(int(x.max(initial=0)) + 1)] if not secret and x.min(initial=0) >= 0 else None
    items = []
    for row_index in tqdm(range(x.shape[0]), desc="IPFE encrypt", unit="sample",
                          disable=not progress, mininterval=0.5, leave=False):
        r = secrets.randbelow(q - 1) + 1 if randomness is None else int(randomness[row_index])
        if not 0 < r < q:
            raise ValueError("encryption randomness must be in 1..q-1")
        xs = x[row_index].tolist()
        if secret:
            c = tuple(group.mul_gen((r * si + xi) % q) for si, xi in zip(key.s, xs))
        else:
            c = tuple(
                group.add(group.mul(h, r), small[xi] if small is not None else group.mul_gen(xi))
                for h, xi in zip(mpk.h, xs)
            )
        items.append(Ciphertext(group, group.mul_gen(r), c))
    return CiphertextBatch(group, mpk.digest, tuple(items))


# --- decryption ------------------------------------------------------------------------------


def _row_plan(rows: np.ndarray):
    """Per row: indices of +1 entries, of -1 entries, and (index, coefficient) of the others."""
    plan = []
    for row in rows.astype(np.int64):
        plus = np.flatnonzero(row == 1).tolist()
        minus = np.flatnonzero(row == -1).tolist()
        other = [(int(i), int(row[i])) for i in np.flatnonzero(np.abs(row) > 1)]
        plan.append((plus, minus, other))
    return plan


def decrypt_points(batch: CiphertextBatch, keys: FunctionalKeys, *, progress: bool = False,
                   samples: Sequence[int] | None = None) -> bytes:
    """The encoded elements <x_s, y_j> g for each sample s (all, or `samples`) and key j,
    sample-major, concatenated (33 bytes each). Only additions and negations for +-1
    coefficients, one scalar multiplication of ct_0 per (sample, key)."""
    group: Group = batch.group
    q = group.order
    plan = _row_plan(keys.rows)
    neg_sk = [(q - sk) % q for sk in keys.sk]
    needs_neg = any(minus for _, minus, _ in plan)
    add_many, neg, mul, encode = group.sum, group.neg, group.mul, group.encode
    chosen = range(batch.N) if samples is None else samples
    out = []
    for s in tqdm(chosen, desc="IPFE decrypt", unit="sample", disable=not progress,
                  mininterval=0.5, leave=False):
        ct = batch.items[s]
        c, c0 = ct.c, ct.c0
        negc = [neg(p) for p in c] if needs_neg else None
        for (plus, minus, other), nsk in zip(plan, neg_sk):
            terms = [c[i] for i in plus]
            if minus:
                terms += [negc[i] for i in minus]
            for i, coeff in other:
                terms.append(mul(c[i], coeff))
            terms.append(mul(c0, nsk))
            out.append(encode(add_many(terms)))
    return b"".join(out)


def decrypt_projections(
    batch: CiphertextBatch,
    keys: FunctionalKeys,
    table: DlogTable,
    *,
    max_feature: int = DEFAULT_MAX_FEATURE,
    progress: bool = False,
    samples: Sequence[int] | None = None,
    workers: int = 1,
    via_basis: bool = True,
) -> np.ndarray:
    """<x_s, y_j> for every sample s of the batch (or `samples`) and every key row j:
    int64 (N, k), i.e. X @ rows.T. Refuses keys of another master key, of another dimension,
    or whose rows could exceed the table's bound; IPFEDecryptError when a result is not
    within the bound (a wrong or tampered key or ciphertext). `workers` > 1 splits the
    samples over that many processes (the table lookup stays in this one).

    via_basis: when the rows span all n dimensions and there are more than n of them (an SML
    of expansion 2 does, with overwhelming probability), decrypt only n linearly independent
    rows, solve for x (exactly: the solution is rounded and checked in integers against every
    decrypted value, falling back to decrypting every row of a sample that does not check),
    and compute the other rows' products from it. Same result, half the work for expansion 2.
    It uses nothing the keys do not already give: n independent keys reveal x (docs/IPFE.md)."""
    if keys.mpk_digest != batch.mpk_digest:
        raise IPFEDecryptError("the functional keys belong to another master public key than the ciphertexts")
    if keys.n != batch.n:
        raise IPFEDecryptError(f"keys of dimension {keys.n} for ciphertexts of dimension {batch.n}")
    check_bound(keys.n, max_feature, keys.rows, table_bound=table.bound)
    chosen = list(range(batch.N)) if samples is None else list(samples)
    basis = _basis_rows(keys.rows) if via_basis and keys.k > keys.n else None
    if basis is not None:
        sub = FunctionalKeys(keys.group, keys.mpk_digest, keys.rows[basis], tuple(keys.sk[i] for i in basis))
        base = decrypt_projections(batch, sub, table, max_feature=max_feature, progress=progress,
                                   samples=chosen, workers=workers, via_basis=False)
        B = keys.rows[basis].astype(np.int64)
        x = np.rint(np.linalg.solve(B.astype(np.float64), base.T.astype(np.float64))).T
        x = x.astype(np.int64)
        good = np.all(x @ B.T == base, axis=1)
        out = x @ keys.rows.astype(np.int64).T
        bad = np.flatnonzero(~good)
        if bad.size:  # pragma: no cover - needs rounding to fail on an exact integer system
            out[bad] = decrypt_projections(batch, keys, table, max_feature=max_feature,
                                           samples=[chosen[i] for i in bad], via_basis=False)
        return out
    if workers > 1 and len(chosen) > 1:
        chunks = _chunks(len(chosen), workers)
        jobs = [
            (batch.group.backend, keys.to_bytes(),
             CiphertextBatch(batch.group, batch.mpk_digest, tuple(batch.items[s] for s in chosen[a:b])).to_bytes())
            for a, b in chunks
        ]
        encoded = b"".join(_run_pool(_decrypt_chunk, jobs, workers, progress, "IPFE decrypt", len(chosen), chunks))
    else:
        encoded = decrypt_points(batch, keys, progress=progress, samples=chosen)
    values = table.solve_encoded(batch.group, encoded)
    count = len(chosen)
    return values.reshape(count, keys.k)


def _basis_rows(rows: np.ndarray) -> list[int] | None:
    """Indices of n linearly independent rows of `rows` (k, n), first ones first; None if the
    rows do not span n dimensions. Greedy Gram-Schmidt (orthogonalised twice) in float64: a
    row joins when its part outside the span so far is not negligible. A rank test per row
    chose the same rows and took 18 s for 784 features (0.16 s now); a poorly chosen row
    could only make the solve in `decrypt_projections` miss its integer check, and a sample
    that misses is decrypted row by row."""
    n = rows.shape[1]
    basis = np.zeros((n, n))
    chosen: list[int] = []
    for i, row in enumerate(rows.astype(np.float64)):
        scale = np.linalg.norm(row)
        if scale == 0:
            continue
        span = basis[: len(chosen)]
        residual = row
        for _ in range(2):
            residual = residual - span.T @ (span @ residual)
        size = np.linalg.norm(residual)
        if size > 1e-8 * scale:
            basis[len(chosen)] = residual / size
            chosen.append(i)
            if len(chosen) == n:
                return chosen
    return None


# --- worker processes -------------------------------------------------------------------------


def _chunks(count: int, workers: int) -> list[tuple[int, int]]:
    """About 4 chunks per worker (so the progress bar moves), in order."""
    pieces = min(count, max(1, workers) * 4)
    edges = np.linspace(0, count, pieces + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _run_pool(fn, jobs, workers, progress, desc, total, chunks) -> list[bytes]:
    """fn over jobs in `workers` spawned processes (spawn: safe in a process with threads),
    results in job order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    results = [None] * len(jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool, \
            tqdm(total=total, desc=desc, unit="sample", disable=not progress, mininterval=0.5,
                 leave=False) as bar:
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        from concurrent.futures import as_completed

        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            a, b = chunks[i]
            bar.update(b - a)
    return results


def _encrypt_chunk(job) -> bytes:
    from .group import get_group

    backend, key_bytes, secret, x, randomness = job
    group = get_group(backend)
    key = (MasterSecretKey if secret else MasterPublicKey).from_bytes(key_bytes, group)
    batch = encrypt_dataset(key, x, randomness=randomness)
    return b"".join(ct.body() for ct in batch.items)


def _decrypt_chunk(job) -> bytes:
    from .group import get_group

    backend, key_bytes, batch_bytes = job
    group = get_group(backend)
    keys = FunctionalKeys.from_bytes(key_bytes, group)
    return decrypt_points(CiphertextBatch.from_bytes(batch_bytes, group), keys)


# --- the SML --------------------------------------------------------------------------------


def sml_rows(parent_hash: bytes, miner: bytes, n_features: int,
             input_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The miner's SML matrix on `parent_hash` (the task's anchor) for a model taking
    `input_shape` (None: flat, the dense SML's): the rows it gets keys for. SMLShapeError
    for a shape no SML of n_features gives."""
    from miner.sml import SML_EXPANSION, model_sml

    shape = (SML_EXPANSION * n_features,) if input_shape is None else tuple(input_shape)
    return model_sml(parent_hash, miner, shape, n_features).matrix


def sml_keys(msk: MasterSecretKey, parent_hash: bytes, miner: bytes,
             input_shape: tuple[int, ...] | None = None, max_feature: int = DEFAULT_MAX_FEATURE,
             table_bound: int = MAX_DLOG_BOUND) -> FunctionalKeys:
    """The data node's side: keys for every row of the miner's SML, which the data node derives
    itself from the anchor, the miner's address and its own task's model (never rows the
    miner sends), after checking the rows' bound."""
    rows = sml_rows(parent_hash, miner, msk.n, input_shape)
    check_bound(msk.n, max_feature, rows, table_bound=table_bound)
    return derive_keys(msk, rows)


def decrypt_sml_inputs(batch: CiphertextBatch, keys: FunctionalKeys, table: DlogTable,
                       *, progress: bool = False) -> np.ndarray:
    """The miner's side: relu(S x) for every sample, int64 (N, k), exactly what
    SML.apply_int(X) gives on the plaintext features."""
    return np.maximum(decrypt_projections(batch, keys, table, progress=progress), 0)


def table_for(group: Group, n_features: int, directory=None, *, max_feature: int = DEFAULT_MAX_FEATURE,
              progress: bool = False) -> DlogTable:
    """The discrete-log table for ternary rows over n_features (one per dataset width)."""
    return DlogTable.load_or_build(group, check_task(n_features, max_feature), directory,
                                   progress=progress)
