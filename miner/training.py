"""Training a task's model behind the miner's SML (float32 torch), until the quantised integer
model meets the task's training accuracy or time runs out.

    data       X = relu(S @ x) / 2**sml.output_shift, reshaped to spec.input_shape; y = labels
    model      build_torch_model(spec), initialised from torch.manual_seed(seed)
    optimiser  Adam(learning_rate, weight_decay), cross-entropy loss
    loop       epochs of shuffled minibatches (shuffle order from a generator seeded with seed)
    stop       after each epoch: export the integer model, evaluate it on the training set with
               the consensus evaluator; stop when it meets target_train_bps, when the time
               limit passes, or after max_epochs
    export     the last integer model, with its training accuracy (what the miner claims)

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
    after each epoch: a miner abandons a model once the head it was trained for moves)."""
    if target_train_bps is not None and not 0 <= target_train_bps <= 10000:
        raise ValueError(f"target_train_bps {target_train_bps} outside 0..10000")
    if spec.num_classes != train.num_classes:
        raise ValueError(f"spec has {spec.num_classes} classes, dataset {train.num_classes}")
    hp = hyperparams
    start = time.monotonic()
    deadline = start + time_limit_s
    with reproducible_torch():
        # data: (n, *input_shape) float32, labels (n,) int64
        inputs = model_inputs(spec, sml, train)
        labels = torch.from_numpy(train.labels.astype(np.int64))
        n = train.n
        shuffle = torch.Generator().manual_seed(seed)

        # model and optimiser
        torch.manual_seed(seed)
        model = build_torch_model(spec)
        optimiser = torch.optim.Adam(model.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
        loss_fn = nn.CrossEntropyLoss()

        def export() -> tuple[IntegerModel, int]:
            model.eval()
            integer_model = quantize_model(
                spec, model, inputs, sml.output_shift, weight_bits=hp.weight_bits
            )
            model.train()
            return integer_model, evaluate_integer_model(integer_model, sml, train)

        # loop
        stopped_by = "epochs"
        epochs_done = 0
        bar = tqdm(
            range(hp.max_epochs),
            desc="training",
            unit="epoch",
            disable=not (progress and sys.stderr.isatty()),
        )
        integer_model, train_bps = None, -1
        for epoch in bar:
            order = torch.randperm(n, generator=shuffle)
            out_of_time = False
            for batch_start in range(0, n, hp.batch_size):
                batch = order[batch_start : batch_start + hp.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(model(inputs[batch]), labels[batch])
                loss.backward()
                optimiser.step()
                if time.monotonic() > deadline:
                    out_of_time = True
                    break
            epochs_done = epoch + 1

            # stop condition: the quantised model, evaluated like consensus will
            try:
                integer_model, train_bps = export()
            except TrainingDiverged:
                if integer_model is None:
                    raise
                stopped_by = "diverged"  # keep the last finite model
                break
            bar.set_postfix(loss=f"{loss.item():.4f}", train_bps=train_bps)
            if target_train_bps is not None and train_bps >= target_train_bps:
                stopped_by = "target"
                break
            if should_stop is not None and should_stop():
                stopped_by = "stopped"
                break
            if out_of_time or time.monotonic() > deadline:
                stopped_by = "time"
                break
        bar.close()
        if integer_model is None:  # max_epochs == 0
            integer_model, train_bps = export()

    return TrainResult(
        integer_model=integer_model,
        float_model=model,
        train_bps=train_bps,
        met_target=target_train_bps is not None and train_bps >= target_train_bps,
        stopped_by=stopped_by,
        epochs=epochs_done,
        seconds=time.monotonic() - start,
    )
