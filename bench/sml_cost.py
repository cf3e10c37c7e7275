"""Accuracy cost of the secure mapping layer.

    python -m bench.sml_cost [--seeds 5] [--epochs 50] [--models logreg,mlp,cnn] [--dataset digits]

For each built-in model and seed: a held-out split of the dataset (20 %), then the same
architecture trained twice for a fixed number of epochs, once behind its consensus SML (a
fresh anchor hash per seed; miner/sml.py's `model_sml`: the dense 2d x d map for logreg and
mlp, the local 3x3 map with E = 8 maps per channel for the cnn) and once on the raw
features; both exported to integer models and scored on the held-out part with the
consensus evaluator. `cost_pp` is the mean accuracy lost to the SML, per model.
`cnn_expansions` measures the cnn at E = 2 and 4 too. Every row also has `copied_bps`: the
trained model scored behind another miner's SML, unchanged (what a copier would submit; it
must stay far below the model's own accuracy).

Prints per-seed lines and, on the last line, one JSON object (percent; std is the sample
standard deviation over seeds), also written to bench/results/sml_cost.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from eth_utils import keccak

from miner.datasets import Dataset, load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model
from miner.model_spec import ModelSpec, build_spec
from miner.sml import SML, identity_mapping, model_sml
from miner.training import Hyperparams, train_model

from .report import report

BENCH_MINER = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
COPIER = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
#: Other maps per input channel (E) the CNN is measured with (the built-in cnn has
#: LOCAL_SML_EXPANSION); its model input is (E*c, h, w).
STUDY_EXPANSIONS = (2, 4)


def mapping_for(kind: str, model: str, data: Dataset, seed: int, miner: bytes = BENCH_MINER
                ) -> tuple[SML, ModelSpec]:
    """(mapping, spec) for 'sml' (consensus: the built-in spec behind its SML, `model_sml`),
    'localE' (the cnn at E maps per channel) or 'none' (no SML)."""
    anchor = keccak(b"bench.sml_cost" + seed.to_bytes(8, "big"))
    expansion = None if kind == "sml" else 1 if kind == "none" else int(kind.removeprefix("local"))
    spec = build_spec(model, data.d, data.num_classes, data.image_shape, expansion=expansion)
    if kind == "none":
        return identity_mapping(data.d), spec
    return model_sml(anchor, miner, spec.input_shape, data.d), spec


def held_out_accuracy_bps(model: str, dataset_name: str, seed: int, epochs: int, kind: str) -> tuple[int, int]:
    """(held-out accuracy behind the mapping, the same model behind another miner's mapping:
    what a copier gets by submitting it unchanged)."""
    data = load_builtin(dataset_name)
    train, test = split_dataset(data, 0.2, seed)
    mapping, spec = mapping_for(kind, model, data, seed)
    result = train_model(
        spec, train, mapping, target_train_bps=None, time_limit_s=600, seed=seed,
        hyperparams=Hyperparams(max_epochs=epochs),
    )
    copier, _ = mapping_for(kind, model, data, seed, miner=COPIER)
    return (evaluate_integer_model(result.integer_model, mapping, test),
            evaluate_integer_model(result.integer_model, copier, test))


def _pct(values: list[int]) -> list[float]:
    return [v / 100 for v in values]


def _std(values: list[int]) -> float:
    return round(statistics.stdev(_pct(values)), 2) if len(values) > 1 else 0.0


def compare(model: str, dataset: str, seeds: list[int], epochs: int, kind: str = "sml") -> dict:
    """One model's with/without-SML accuracies over the seeds, and the mean cost."""
    with_sml, without_sml, copied = [], [], []
    for seed in seeds:
        accuracy, copy = held_out_accuracy_bps(model, dataset, seed, epochs, kind)
        with_sml.append(accuracy)
        copied.append(copy)
        without_sml.append(held_out_accuracy_bps(model, dataset, seed, epochs, "none")[0])
        print(f"{model} ({kind}) seed {seed}: with SML {with_sml[-1]} bps (copied to another "
              f"miner: {copy}), without {without_sml[-1]} bps", flush=True)
    with_mean, without_mean = statistics.fmean(_pct(with_sml)), statistics.fmean(_pct(without_sml))
    return {
        "with_sml_bps": with_sml,
        "without_sml_bps": without_sml,
        "with_sml_mean": round(with_mean, 2),
        "without_sml_mean": round(without_mean, 2),
        "with_sml_std": _std(with_sml),
        "without_sml_std": _std(without_sml),
        "copied_bps": copied,
        "copied_max": max(copied) / 100,
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
        result["cnn_expansions"] = {
            f"expansion_{e}": compare("cnn", args.dataset, seeds, args.epochs, f"local{e}")
            for e in STUDY_EXPANSIONS
        }
    result["seconds"] = round(time.monotonic() - start, 1)
    report("sml_cost", result)


if __name__ == "__main__":
    main()
