"""Cost of encrypted training data (inner-product functional encryption through the SML).

    python -m bench.ipfe [--model mlp|cnn] [--workers N] [--py-ecc-samples 4] [--seed 0]

The digits training set (80/20 split: 1,438 samples x 64 features, 0..255) behind the SML of
miner/sml.py that the built-in model gets: the mlp the dense one (expansion
miner.sml.SML_EXPANSION: 128 rows), the cnn the local one (8 maps per pixel: 512 rows of at
most 9 taps; results in bench/results/ipfe_cnn.json). Per backend:

    encrypt_s   the data node: one ciphertext per sample under one master key (it holds msk)
    decrypt_s   the miner: decode the published ciphertext blob, decrypt its 1,438 x rows SML
                projections with its functional keys, discrete logs from the table
    keygen_s    the data node: the miner's functional keys, one per row

coincurve runs the whole set with --workers processes (default: all CPUs), wall-clock and CPU
seconds (this process and its workers; the machine's load average is reported too, since
other processes stretch wall-clock time); the pure-Python
py-ecc backend is timed on --py-ecc-samples samples in one process and extrapolated linearly
to the whole set (said so in its figures). Also: building the discrete-log table (|v| <= 64 *
255) from scratch with each backend, and loading it back from disk. Every decryption is checked
against SML.apply_int on the plaintext. Prints one JSON object on the last line, also written to
bench/results/ipfe.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from eth_utils import keccak

from miner.datasets import load_builtin, split_dataset
from miner.ipfe import (
    CiphertextBatch,
    DlogTable,
    FunctionalKeys,
    check_bound,
    check_task,
    decrypt_projections,
    encrypt_dataset,
    get_group,
    setup,
    sml_keys,
)
from miner.model_spec import build_spec
from miner.sml import model_sml

from .report import report

BENCH_MINER = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
GOAL_S = 60.0


def _cpu() -> float:
    """CPU seconds of this process and of its finished worker processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(fn, cpu: dict | None = None, key: str = ""):
    """(fn(), wall seconds); the CPU seconds go to cpu[key] when cpu is given."""
    start, start_cpu = time.perf_counter(), _cpu()
    value = fn()
    if cpu is not None:
        cpu[key] = round(_cpu() - start_cpu, 3)
    return value, round(time.perf_counter() - start, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--py-ecc-samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    progress = not args.no_progress
    start = time.monotonic()

    train, _ = split_dataset(load_builtin("digits"), 0.2, args.seed)
    X = train.features.astype(np.int64)
    n_samples, d = X.shape
    anchor = keccak(b"bench.ipfe" + args.seed.to_bytes(8, "big"))
    input_shape = build_spec(args.model, d, train.num_classes, train.image_shape).input_shape
    sml = model_sml(anchor, BENCH_MINER, input_shape, d)
    expected = sml.apply_int(X)
    bound = check_task(d)

    result: dict = {
        "dataset": "digits",
        "model": args.model,
        "samples": n_samples,
        "features": d,
        "sml_rows": sml.out_dim,
        "sml_expansion": sml.out_dim // d,
        "bound": bound,
        "sml_bound": check_bound(d, 255, sml.matrix),
        "curve": "secp256k1",
        # other processes on the machine slow the wall-clock figures; CPU seconds are also given
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
    }

    # the discrete-log table: built from scratch by each backend, then loaded from disk
    with tempfile.TemporaryDirectory(prefix="bench-ipfe-") as tmp:
        tables = {}
        for backend in ("coincurve", "py-ecc"):
            tables[backend], build_s = _timed(lambda: DlogTable.load_or_build(
                get_group(backend), bound, os.path.join(tmp, backend), progress=progress))
            result.setdefault("table", {})[f"build_s_{backend}"] = build_s
        table, load_s = _timed(lambda: DlogTable.load_or_build(get_group(), bound, os.path.join(tmp, "coincurve")))
        result["table"].update({
            "baby_steps": table.baby_steps, "giant_steps": table.giant_steps, "load_s": load_s,
            "file_bytes": os.path.getsize(table.path),
            "same_for_both_backends": bool(np.array_equal(tables["coincurve"].table, tables["py-ecc"].table)),
        })

    # coincurve: the whole training set
    group = get_group("coincurve")
    mpk, msk = setup(d, group)
    cpu: dict = {}
    batch, encrypt_s = _timed(lambda: encrypt_dataset(msk, X, progress=progress, workers=args.workers),
                              cpu, "encrypt_cpu_s")
    blob = batch.to_bytes()
    keys, keygen_s = _timed(lambda: sml_keys(msk, anchor, BENCH_MINER, input_shape))
    key_blob = keys.to_bytes()

    def miner_side(backend: str, data: bytes, workers=1):
        g = get_group(backend)
        received = CiphertextBatch.from_bytes(data, g)
        own_keys = FunctionalKeys.from_bytes(key_blob, g)
        return decrypt_projections(received, own_keys, table, progress=progress, workers=workers)

    projections, decrypt_s = _timed(lambda: miner_side("coincurve", blob, workers=args.workers),
                                    cpu, "decrypt_cpu_s")
    result["coincurve"] = {
        "encrypt_s": encrypt_s,
        "decrypt_s": decrypt_s,
        "keygen_s": keygen_s,
        **cpu,
        "workers": args.workers,
        "correct": bool(np.array_equal(np.maximum(projections, 0), expected)),
        "goal_met": encrypt_s < GOAL_S and decrypt_s < GOAL_S,
    }
    result["ciphertext_bytes"] = len(blob)
    result["keys_bytes"] = len(key_blob)
    result["mpk_bytes"] = len(mpk.to_bytes())

    # py-ecc: a sample of the set, extrapolated
    k = max(1, min(args.py_ecc_samples, n_samples))
    rng = np.random.default_rng(args.seed)
    sample = sorted(rng.choice(n_samples, size=k, replace=False).tolist())
    pe = get_group("py-ecc")
    mpk_p, msk_p = setup(d, pe)
    _, enc_sample_s = _timed(lambda: encrypt_dataset(msk_p, X[sample]))
    sub_blob = CiphertextBatch(group, batch.mpk_digest, tuple(batch.items[i] for i in sample)).to_bytes()
    got, dec_sample_s = _timed(lambda: miner_side("py-ecc", sub_blob))
    scale = n_samples / k
    result["py-ecc"] = {
        "encrypt_s": round(enc_sample_s * scale, 1),
        "decrypt_s": round(dec_sample_s * scale, 1),
        "extrapolated": True,
        "extrapolated_from_samples": k,
        "sample_encrypt_s": enc_sample_s,
        "sample_decrypt_s": dec_sample_s,
        "workers": 1,
        "correct": bool(np.array_equal(np.maximum(got, 0), expected[sample])),
        "note": "timed on the sample in one process and scaled by samples / sample size; "
                "decrypt_s includes decoding the sample's ciphertexts",
    }
    result["seconds"] = round(time.monotonic() - start, 1)
    report("ipfe" if args.model == "mlp" else f"ipfe_{args.model}", result)


if __name__ == "__main__":
    main()
