"""Accuracy cost of the secure mapping layer.

    python -m bench.sml_cost [--seeds 5] [--epochs 50] [--models logreg,mlp,cnn] [--dataset digits]

For each built-in model and seed: a held-out split of the dataset (20 %), then the same
architecture trained twice for a fixed number of epochs, once behind an SML (expansion 2 +
ReLU, a fresh anchor hash per seed) and once on the raw features; both exported to integer
models and scored on the held-out part with the consensus evaluator. `cost_pp` is the mean
accuracy lost to the SML, per model.

A design study rides along for the CNN (`cnn_local_study`, not what consensus uses yet):
a keyed, unshared local map that keeps neighbourhoods (issue #11's proposal for a CNN SML),
E = 2, 4 and 8 maps per input channel, each output the relu of a +-1-weighted sum over the
3x3 window around its pixel; the CNN's input is then (E*c, h, w). Every model's row also
has `copied_bps`: the trained model scored behind another miner's mapping, unchanged (what
a copier would submit; it must stay far below the model's own accuracy).

Prints per-seed lines and, on the last line, one JSON object (percent; std is the sample
standard deviation over seeds), also written to bench/results/sml_cost.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from eth_utils import keccak

from miner.datasets import Dataset, load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model
from miner.model_spec import build_spec
from miner.sml import SML, SML_EXPANSION, identity_mapping, keccak_stream, output_shift_for, sml_for, sml_seed
from miner.training import Hyperparams, train_model

from .report import report

BENCH_MINER = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
COPIER = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
#: Maps per input channel tried by the CNN study (its model input is (E*c, h, w)).
STUDY_EXPANSIONS = (2, 4, 8)


def local_sml(anchor: bytes, miner: bytes, image_shape: tuple[int, int, int], expansion: int) -> SML:
    """The study's neighbourhood-keeping SML: `expansion` keyed maps per input channel, each
    output the relu of a +-1-weighted sum over the 3x3 window (every input channel) around the
    pixel it lands on in the (expansion*c, h, w) input the CNN reshapes it to; a keyed,
    unshared (locally connected) map. The signs are the bits of sml_for's keccak stream, row
    by row over each row's window, so it is fixed by the anchor and the miner alone."""
    c, h, w = image_shape
    pixel = np.arange(expansion * c * h * w) % (h * w)
    ry, rx = np.divmod(pixel, w)
    py, px = np.divmod(np.arange(h * w), w)
    near = (np.abs(ry[:, None] - py[None, :]) <= 1) & (np.abs(rx[:, None] - px[None, :]) <= 1)
    mask = np.tile(near, (1, c))  # input index = channel * h * w + pixel
    taps = int(mask.sum())
    bits = np.unpackbits(np.frombuffer(keccak_stream(sml_seed(anchor, miner), taps // 256 + 1), np.uint8))
    matrix = np.zeros(mask.shape, dtype=np.int8)
    matrix[mask] = np.where(bits[:taps] == 1, 1, -1)
    matrix.setflags(write=False)
    return SML(matrix=matrix, output_shift=output_shift_for(int(near.sum(axis=1).max()) * c))


def mapping_for(kind: str, data: Dataset, seed: int, miner: bytes = BENCH_MINER) -> tuple[SML, int]:
    """(mapping, expansion) for 'sml', 'localE' (the study, E maps per channel) or 'none'."""
    anchor = keccak(b"bench.sml_cost" + seed.to_bytes(8, "big"))
    if kind == "sml":
        return sml_for(anchor, miner, data.d), SML_EXPANSION
    if kind.startswith("local"):
        assert data.image_shape is not None
        expansion = int(kind.removeprefix("local"))
        return local_sml(anchor, miner, data.image_shape, expansion), expansion
    return identity_mapping(data.d), 1


def held_out_accuracy_bps(model: str, dataset_name: str, seed: int, epochs: int, kind: str) -> tuple[int, int]:
    """(held-out accuracy behind the mapping, the same model behind another miner's mapping:
    what a copier gets by submitting it unchanged)."""
    data = load_builtin(dataset_name)
    train, test = split_dataset(data, 0.2, seed)
    mapping, expansion = mapping_for(kind, data, seed)
    spec = build_spec(model, data.d, data.num_classes, data.image_shape, expansion=expansion)
    result = train_model(
        spec, train, mapping, target_train_bps=None, time_limit_s=600, seed=seed,
        hyperparams=Hyperparams(max_epochs=epochs),
    )
    copier, _ = mapping_for(kind, data, seed, miner=COPIER)
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
        result["cnn_local_study"] = {
            f"expansion_{e}": compare("cnn", args.dataset, seeds, args.epochs, f"local{e}")
            for e in STUDY_EXPANSIONS
        }
    result["seconds"] = round(time.monotonic() - start, 1)
    report("sml_cost", result)


if __name__ == "__main__":
    main()
