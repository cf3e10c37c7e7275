"""Training a task's model behind the miner's SML (float32 torch), until the quantised integer
model meets the task's training accuracy or time runs out.

    data       X = relu(S @ x) / 2**sml.output_shift, reshaped to spec.input_shape; y = labels
    model      build_torch_model(spec), initialised from torch.manual_seed(seed)
    optimiser  Adam(learning_rate, weight_decay), cross-entropy loss
    loop       epochs of shuffled minibatches (shuffle order from a generator seeded with seed)
    stop       after each epoch whose float accuracy is near target_train_bps (the running
               accuracy of the loop's own minibatches, then one batched forward pass; see
               NEAR_TARGET_BPS and FLOAT_MARGIN_BPS): export the integer model and evaluate
               it on the training set with the consensus evaluator; stop when it meets the
               target, when the time limit passes, or after max_epochs. Other epochs cost
               what a plain torch epoch costs.
    export     the last integer model, with its training accuracy (what the miner claims):
               the claim is always the consensus evaluator's number for the committed model

Reproducibility: training runs single-threaded with torch.use_deterministic_algorithms(True)
(both restored afterwards), so the same seed, data and SML give the same model bytes on the
same machine and torch build. Cross-machine bit-exactness is not needed here: consensus only
re-evaluates the committed integer model, never re-trains. A run stopped by the time limit
depends on timing and is not reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import contextlib
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from miner.datasets import Dataset
from miner.integer_eval import evaluate_integer_model
from miner.integer_model import IntegerModel
from miner.model_spec import Conv2d, Dense, Flatten, MaxPool2d, ModelSpec, ReLU, layer_shapes
from miner.quantize import TrainingDiverged, quantize_model
from miner.sml import SML

#: The integer model is exported and evaluated after an epoch only when (1) the float model's
#: running training accuracy (free: the loop's own minibatch predictions) is at least
#: target - NEAR_TARGET_BPS, and then (2) the end-of-epoch float model's accuracy on the
#: training set (one batched forward pass) is at least target - FLOAT_MARGIN_BPS; and at the
#: end. The integer model is within about half a point of the float one (docs/ML.md,
#: "Quantisation"), so these gates rarely delay a stop by an epoch, and never change what is
#: claimed: the claim is always the consensus evaluator's number for the exported model.
NEAR_TARGET_BPS = 300
FLOAT_MARGIN_BPS = 50


@dataclass(frozen=True)
class Hyperparams:
    learning_rate: float = 3e-3
    max_epochs: int = 200
    batch_size: int = 32
    weight_decay: float = 0.0
    weight_bits: int = 8  # integer model weights: 8 or 16 bits


@dataclass(frozen=True, eq=False)
class TrainResult:
    integer_model: IntegerModel
    float_model: nn.Sequential
    train_bps: int  # integer model on the training set through the SML (the claim)
    met_target: bool
    stopped_by: str  # "target", "time", "epochs", "stopped" or "diverged"
    epochs: int
    seconds: float


def build_torch_model(spec: ModelSpec) -> nn.Sequential:
    """One torch module per spec layer, in order (quantize.py relies on this)."""
    shapes = layer_shapes(spec)
    modules: list[nn.Module] = []
    for layer, in_shape in zip(spec.layers, shapes):
        if isinstance(layer, Dense):
            modules.append(nn.Linear(in_shape[0], layer.units))
        elif isinstance(layer, Conv2d):
            padding = layer.kernel // 2 if layer.padding == "same" else 0
            modules.append(nn.Conv2d(in_shape[0], layer.channels, layer.kernel, padding=padding))
        elif isinstance(layer, ReLU):
            modules.append(nn.ReLU())
        elif isinstance(layer, MaxPool2d):
            modules.append(nn.MaxPool2d(layer.size))
        elif isinstance(layer, Flatten):
            modules.append(nn.Flatten())
        else:
            raise ValueError(f"unknown layer {layer!r}")
    return nn.Sequential(*modules)


def model_inputs(spec: ModelSpec, sml: SML, dataset: Dataset) -> torch.Tensor:
    """What the float model sees: SML output / 2**output_shift, shape (n, *spec.input_shape)."""
    if sml.out_dim != spec.input_dim or sml.input_dim != dataset.d:
        raise ValueError(
            f"dataset d={dataset.d} -> SML {sml.input_dim}->{sml.out_dim} -> model input {spec.input_dim}"
        )
    mapped = torch.from_numpy(sml.apply_float(dataset.features))
    return mapped.reshape((dataset.n,) + spec.input_shape)


def evaluate_float_model(model: nn.Module, spec: ModelSpec, sml: SML, dataset: Dataset) -> int:
    """Float accuracy in basis points (for comparison with the integer model; not consensus)."""
    with torch.no_grad():
        predictions = model(model_inputs(spec, sml, dataset)).argmax(dim=1).numpy()
    return int(np.count_nonzero(predictions == dataset.labels)) * 10000 // dataset.n


@contextlib.contextmanager
def reproducible_torch(threads: int = 1):
    """Single-threaded, deterministic torch kernels for the duration; restores both after."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)


class _TrainingRun:
    """One run's data, model and optimiser, so the loop in train_model reads top to bottom.

    The construction order (data, shuffle generator, torch seed, model) is what makes two
    runs with one seed produce bit-identical weights: keep it.
    """

    def __init__(self, spec: ModelSpec, train: Dataset, sml: SML, hp: Hyperparams, seed: int) -> None:
        self.spec, self.train, self.sml, self.hp = spec, train, sml, hp
        # data: (n, *input_shape) float32, labels (n,) int64
        self.inputs = model_inputs(spec, sml, train)
        self.labels = torch.from_numpy(train.labels.astype(np.int64))
        self.shuffle = torch.Generator().manual_seed(seed)
        # model and optimiser
        torch.manual_seed(seed)
        self.model = build_torch_model(spec)
        self.optimiser = torch.optim.Adam(
            self.model.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay
        )
        self.loss_fn = nn.CrossEntropyLoss()

    def epoch(self, deadline: float) -> tuple[int, float, bool]:
        """One pass in a fresh random order: (running float accuracy bps, last loss, out of time)."""
        n = self.train.n
        order = torch.randperm(n, generator=self.shuffle)
        correct, seen, loss = torch.zeros((), dtype=torch.int64), 0, torch.zeros(())
        for batch_start in range(0, n, self.hp.batch_size):
            batch = order[batch_start : batch_start + self.hp.batch_size]
            self.optimiser.zero_grad()
            logits = self.model(self.inputs[batch])
            loss = self.loss_fn(logits, self.labels[batch])
            loss.backward()
            self.optimiser.step()
            correct += (logits.detach().argmax(dim=1) == self.labels[batch]).sum()
            seen += len(batch)
            if time.monotonic() > deadline:
                return int(correct) * 10000 // max(seen, 1), loss.item(), True
        return int(correct) * 10000 // max(seen, 1), loss.item(), False

    def export(self) -> tuple[IntegerModel, int]:
        """The quantised model and its training accuracy, evaluated as consensus will."""
        self.model.eval()
        integer_model = quantize_model(
            self.spec, self.model, self.inputs, self.sml.output_shift, weight_bits=self.hp.weight_bits
        )
        self.model.train()
        return integer_model, evaluate_integer_model(integer_model, self.sml, self.train)

    def near_target(self, target_train_bps: int | None, running_bps: int) -> bool:
        """Whether the integer model could meet the target now (before that it cannot, so
        evaluating it would only cost time)."""
        return (
            target_train_bps is not None
            and running_bps >= target_train_bps - NEAR_TARGET_BPS
            and self.float_bps() >= target_train_bps - FLOAT_MARGIN_BPS
        )

    def float_bps(self) -> int:
        self.model.eval()
        with torch.no_grad():
            correct = int((self.model(self.inputs).argmax(dim=1) == self.labels).sum())
        self.model.train()
        return correct * 10000 // self.train.n

    def finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def weights(self) -> dict:
        return {k: v.clone() for k, v in self.model.state_dict().items()}


def train_model(
    spec: ModelSpec,
    train: Dataset,
    sml: SML,
    *,
    target_train_bps: int | None,
    time_limit_s: float,
    seed: int,
    hyperparams: Hyperparams = Hyperparams(),
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train until the integer model's training accuracy >= target_train_bps (None: run all
    max_epochs), time_limit_s passes, or ``should_stop()`` says the work is stale (asked
    after each epoch: a miner abandons a model once the task or its anchor changes)."""
    if target_train_bps is not None and not 0 <= target_train_bps <= 10000:
        raise ValueError(f"target_train_bps {target_train_bps} outside 0..10000")
    if spec.num_classes != train.num_classes:
        raise ValueError(f"spec has {spec.num_classes} classes, dataset {train.num_classes}")
    start = time.monotonic()
    deadline = start + time_limit_s
    with reproducible_torch():
        run = _TrainingRun(spec, train, sml, hyperparams, seed)
        stopped_by, epochs_done = "epochs", 0
        integer_model, train_bps = None, -1
        exported_epoch, last_finite = 0, None  # epoch of integer_model; finite weights
        bar = tqdm(range(hyperparams.max_epochs), desc="training", unit="epoch",
                   disable=not (progress and sys.stderr.isatty()))
        for epoch in bar:
            running_bps, loss, out_of_time = run.epoch(deadline)
            epochs_done = epoch + 1
            if not run.finite():
                stopped_by = "diverged"  # the last finite weights are exported below
                break
            last_finite = run.weights()
            bar.set_postfix(loss=f"{loss:.4f}", float_bps=running_bps, train_bps=train_bps)
            if run.near_target(target_train_bps, running_bps):
                integer_model, train_bps = run.export()
                exported_epoch = epochs_done
                if train_bps >= target_train_bps:
                    stopped_by = "target"
                    break
            if should_stop is not None and should_stop():
                stopped_by = "stopped"
                break
            if out_of_time or time.monotonic() > deadline:
                stopped_by = "time"
                break
        bar.close()
        if stopped_by == "diverged":
            if last_finite is None:
                raise TrainingDiverged("weights or biases are not finite: training diverged")
            run.model.load_state_dict(last_finite)
        if exported_epoch != epochs_done or integer_model is None:  # the final model's claim
            integer_model, train_bps = run.export()
        model = run.model

    return TrainResult(
        integer_model=integer_model,
        float_model=model,
        train_bps=train_bps,
        met_target=target_train_bps is not None and train_bps >= target_train_bps,
        stopped_by=stopped_by,
        epochs=epochs_done,
        seconds=time.monotonic() - start,
    )
