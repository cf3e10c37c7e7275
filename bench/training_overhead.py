"""What the miner's training loop costs over a plain torch loop on the same model and data.

    python -m bench.training_overhead [--repeats 3] [--model mlp] [--dataset digits] [--target-bps 9800]

The miner loop is `train_model` to the target training accuracy (SML mapping, the running
float accuracy, the integer model exported and evaluated by the consensus evaluator once the
float model nears the target, the final export). The plain loop is the same model, optimiser,
seed, shuffling and number of epochs on the same SML-mapped tensors, nothing else. Both run
single-threaded (`reproducible_torch`), alternating. `ratio` = plain_s / miner_s (1.0: no
overhead) from the median of each over the repeats; `ratio_of_minimums` from the fastest of
each. On a ~0.1 s loop single runs of either vary by 20-30 % on this 2-core machine, which
the minimum of 3 repeats (this bench's former statistic) could not tell from overhead.
Also checks that both produce the same float weights.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from eth_utils import keccak
from torch import nn

from miner.datasets import load_builtin, split_dataset
from miner.model_spec import build_spec
from miner.sml import model_sml
from miner.training import Hyperparams, build_torch_model, model_inputs, reproducible_torch, train_model

from .report import report

BENCH_MINER = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")


def plain_loop(spec, inputs, labels, epochs: int, seed: int, hp: Hyperparams) -> tuple[float, nn.Module]:
    with reproducible_torch():
        start = time.perf_counter()
        n = inputs.shape[0]
        shuffle = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        model = build_torch_model(spec)
        optimiser = torch.optim.Adam(model.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(epochs):
            order = torch.randperm(n, generator=shuffle)
            for batch_start in range(0, n, hp.batch_size):
                batch = order[batch_start : batch_start + hp.batch_size]
                optimiser.zero_grad()
                loss_fn(model(inputs[batch]), labels[batch]).backward()
                optimiser.step()
        return time.perf_counter() - start, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--target-bps", type=int, default=9800)
    args = parser.parse_args()

    data = load_builtin(args.dataset)
    train, _ = split_dataset(data, 0.2, seed=0)
    spec = build_spec(args.model, train.d, train.num_classes, train.image_shape)
    sml = model_sml(keccak(b"bench.training_overhead"), BENCH_MINER, spec.input_shape, train.d)
    hp = Hyperparams()
    inputs = model_inputs(spec, sml, train)
    labels = torch.from_numpy(train.labels.astype(np.int64))

    miner_runs, plain_runs, same = [], [], True
    for _ in range(args.repeats):
        result = train_model(spec, train, sml, target_train_bps=args.target_bps, time_limit_s=600, seed=0,
                             hyperparams=hp)
        miner_runs.append(result.seconds)
        epochs = result.epochs
        seconds, plain = plain_loop(spec, inputs, labels, epochs, 0, hp)
        plain_runs.append(seconds)
        same = same and all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(),
                                                              result.float_model.state_dict().values()))
        print(f"miner {result.seconds:.3f} s ({result.epochs} epochs, {result.stopped_by}), plain {seconds:.3f} s",
              flush=True)
    report("training_overhead", {
        "dataset": args.dataset, "model": args.model, "target_bps": args.target_bps,
        "train_bps": result.train_bps, "stopped_by": result.stopped_by, "epochs": epochs,
        "repeats": args.repeats, "miner_s": round(statistics.median(miner_runs), 4),
        "plain_s": round(statistics.median(plain_runs), 4),
        "ratio": round(statistics.median(plain_runs) / statistics.median(miner_runs), 3),
        "ratio_of_minimums": round(min(plain_runs) / min(miner_runs), 3),
        "same_float_weights": same, "threads": 1, "torch": torch.__version__,
    })


if __name__ == "__main__":
    main()
