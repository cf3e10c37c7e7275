"""Accuracy cost of the secure mapping layer.

    python -m bench.sml_cost [--seeds 5] [--epochs 50] [--model mlp] [--dataset digits]

For each seed: a held-out split of the dataset (20 %), then the same architecture trained
twice for a fixed number of epochs, once behind an SML (expansion 2 + ReLU, a fresh parent
hash per seed) and once on the raw features; both exported to integer models and scored on
the held-out part with the consensus evaluator. Prints per-seed lines and, on the last line,
one JSON object (percent; std is the sample standard deviation over seeds), also written to
bench/results/sml_cost.json.
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
from miner.sml import SML_EXPANSION, identity_mapping, sml_for
from miner.training import Hyperparams, train_model

from .report import report

BENCH_MINER = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")


def held_out_accuracy_bps(model: str, dataset_name: str, seed: int, epochs: int, with_sml: bool) -> int:
    data = load_builtin(dataset_name)
    train, test = split_dataset(data, 0.2, seed)
    if with_sml:
        parent = keccak(b"bench.sml_cost" + seed.to_bytes(8, "big"))
        mapping, expansion = sml_for(parent, BENCH_MINER, data.d), SML_EXPANSION
    else:
        mapping, expansion = identity_mapping(data.d), 1
    spec = build_spec(model, data.d, data.num_classes, data.image_shape, expansion=expansion)
    result = train_model(
        spec, train, mapping, target_train_bps=None, time_limit_s=600, seed=seed,
        hyperparams=Hyperparams(max_epochs=epochs),
    )
    return evaluate_integer_model(result.integer_model, mapping, test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--dataset", default="digits")
    args = parser.parse_args()

    start = time.monotonic()
    seeds = list(range(args.seeds))
    with_sml, without_sml = [], []
    for seed in seeds:
        with_sml.append(held_out_accuracy_bps(args.model, args.dataset, seed, args.epochs, True))
        without_sml.append(held_out_accuracy_bps(args.model, args.dataset, seed, args.epochs, False))
        print(f"seed {seed}: with SML {with_sml[-1]} bps, without SML {without_sml[-1]} bps", flush=True)

    def pct(values: list[int]) -> list[float]:
        return [v / 100 for v in values]

    def std(values: list[int]) -> float:
        return round(statistics.stdev(pct(values)), 2) if len(values) > 1 else 0.0

    with_mean, without_mean = statistics.fmean(pct(with_sml)), statistics.fmean(pct(without_sml))
    result = {
        "dataset": args.dataset,
        "model": args.model,
        "epochs": args.epochs,
        "test_fraction": 0.2,
        "seeds": seeds,
        "with_sml_bps": with_sml,
        "without_sml_bps": without_sml,
        "with_sml_mean": round(with_mean, 2),
        "without_sml_mean": round(without_mean, 2),
        "cost_pp": round(without_mean - with_mean, 2),
        "with_sml_std": std(with_sml),
        "without_sml_std": std(without_sml),
        "torch": torch.__version__,
        "seconds": round(time.monotonic() - start, 1),
    }
    report("sml_cost", result)


if __name__ == "__main__":
    main()
