"""Accuracy cost of the secure mapping layer.

    python -m bench.sml_cost [--seeds 5] [--epochs 50] [--models logreg,mlp,cnn] [--dataset digits]

For each built-in model and seed: a held-out split of the dataset (20 %), then the same
architecture trained twice for a fixed number of epochs, once behind an SML (expansion 2 +
ReLU, a fresh anchor hash per seed) and once on the raw features; both exported to integer
models and scored on the held-out part with the consensus evaluator. `cost_pp` is the mean
accuracy lost to the SML, per model.

A design study rides along for the CNN (`cnn_local_study`, not what consensus uses): the same
keyed ternary matrix with each output's row masked to the 3x3 neighbourhood of the pixel it
lands on in the (expansion*c, h, w) input the CNN reshapes it to, i.e. a keyed, unshared
local map that keeps neighbourhoods (issue #11's proposal for a CNN SML).

Prints per-seed lines and, on the last line, one JSON object (percent; std is the sample
standard deviation over seeds), also written to bench/results/sml_cost.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from eth_utils import keccak

from miner.datasets import load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model
from miner.model_spec import build_spec
import numpy as np

from miner.datasets import Dataset
from miner.sml import SML, SML_EXPANSION, identity_mapping, output_shift_for, sml_for
from miner.training import Hyperparams, train_model

from .report import report

BENCH_MINER = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")


def local_sml(anchor: bytes, miner: bytes, image_shape: tuple[int, int, int], radius: int = 1) -> SML:
    """The study's neighbourhood-keeping SML: sml_for's matrix, row r masked to the
    (2*radius+1)^2 window (every input channel) around the pixel r lands on."""
    c, h, w = image_shape
    full = sml_for(anchor, miner, c * h * w).matrix
    rows = np.arange(full.shape[0]) % (h * w)
    ry, rx = np.divmod(rows, w)
    py, px = np.divmod(np.arange(h * w), w)
    near = (np.abs(ry[:, None] - py[None, :]) <= radius) & (np.abs(rx[:, None] - px[None, :]) <= radius)
    mask = np.tile(near, (1, c))  # input index = channel * h * w + pixel
    matrix = np.where(mask, full, 0).astype(np.int8)
    matrix.setflags(write=False)
    return SML(matrix=matrix, output_shift=output_shift_for(int(near.sum(axis=1).max()) * c))


def mapping_for(kind: str, data: Dataset, seed: int) -> tuple[SML, int]:
    """(mapping, expansion) for 'sml', 'local' (the study) or 'none'."""
    anchor = keccak(b"bench.sml_cost" + seed.to_bytes(8, "big"))
    if kind == "sml":
        return sml_for(anchor, BENCH_MINER, data.d), SML_EXPANSION
    if kind == "local":
        assert data.image_shape is not None
        return local_sml(anchor, BENCH_MINER, data.image_shape), SML_EXPANSION
    return identity_mapping(data.d), 1


def held_out_accuracy_bps(model: str, dataset_name: str, seed: int, epochs: int, kind: str) -> int:
    data = load_builtin(dataset_name)
    train, test = split_dataset(data, 0.2, seed)
    mapping, expansion = mapping_for(kind, data, seed)
    spec = build_spec(model, data.d, data.num_classes, data.image_shape, expansion=expansion)
    result = train_model(
        spec, train, mapping, target_train_bps=None, time_limit_s=600, seed=seed,
        hyperparams=Hyperparams(max_epochs=epochs),
    )
    return evaluate_integer_model(result.integer_model, mapping, test)


def _pct(values: list[int]) -> list[float]:
    return [v / 100 for v in values]


def _std(values: list[int]) -> float:
    return round(statistics.stdev(_pct(values)), 2) if len(values) > 1 else 0.0


def compare(model: str, dataset: str, seeds: list[int], epochs: int, kind: str = "sml") -> dict:
    """One model's with/without-SML accuracies over the seeds, and the mean cost."""
    with_sml, without_sml = [], []
    for seed in seeds:
        with_sml.append(held_out_accuracy_bps(model, dataset, seed, epochs, kind))
        without_sml.append(held_out_accuracy_bps(model, dataset, seed, epochs, "none"))
        print(f"{model} ({kind}) seed {seed}: with SML {with_sml[-1]} bps, without "
              f"{without_sml[-1]} bps", flush=True)
    with_mean, without_mean = statistics.fmean(_pct(with_sml)), statistics.fmean(_pct(without_sml))
    return {
        "with_sml_bps": with_sml,
        "without_sml_bps": without_sml,
        "with_sml_mean": round(with_mean, 2),
        "without_sml_mean": round(without_mean, 2),
        "with_sml_std": _std(with_sml),
        "without_sml_std": _std(without_sml),
        "cost_pp": round(without_mean - with_mean, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--models", default="logreg,mlp,cnn")
    parser.add_argument("--dataset", default="digits")
    args = parser.parse_args()

    start = time.monotonic()
    seeds = list(range(args.seeds))
    models = {name: compare(name, args.dataset, seeds, args.epochs) for name in args.models.split(",")}
    result = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "test_fraction": 0.2,
        "seeds": seeds,
        "cost_pp": {name: figures["cost_pp"] for name, figures in models.items()},
        "models": models,
        "torch": torch.__version__,
    }
    if "cnn" in models:
        result["cnn_local_study"] = compare("cnn", args.dataset, seeds, args.epochs, "local")
    result["seconds"] = round(time.monotonic() - start, 1)
    report("sml_cost", result)


if __name__ == "__main__":
    main()
