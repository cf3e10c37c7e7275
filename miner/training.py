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

Devices and processes: the float model trains on `device` (cpu, cuda, cuda:N) and, with
`replicas` (miner/distributed.py), data-parallel across processes (DDP). Whatever trained it,
the float weights are copied to CPU and the integer model, its claimed accuracy and so
everything committed are derived from them there, by the same code as always.

Reproducibility: training runs single-threaded with torch.use_deterministic_algorithms(True)
(both restored afterwards), so the same seed, data and SML give the same model bytes on the
same machine and torch build. Cross-machine bit-exactness is not needed here: consensus only
re-evaluates the committed integer model, never re-trains. A run stopped by the time limit
depends on timing and is not reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import contextlib
import copy
import os
import sys
import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from miner.datasets import Dataset
from miner.distributed import JobAborted, ReplicaGroup, Replicas, SingleProcess
from miner.integer_eval import evaluate_integer_model
from miner.integer_model import IntegerModel
from miner.model_spec import Conv2d, Dense, Flatten, MaxPool2d, ModelSpec, ReLU, layer_shapes
from miner.quantize import FORWARD_CHUNK, TrainingDiverged, quantize_model
from miner.sml import SML

#: The integer model is exported and evaluated after an epoch only when (1) the float model's
#: running training accuracy (free: the loop's own minibatch predictions) is at least
#: target - NEAR_TARGET_BPS, and then (2) the end-of-epoch float model's accuracy on the
#: training set (one batched forward pass) is at least target - FLOAT_MARGIN_BPS; and at the
#: end. The integer model is within about half a point of the float one (docs/ML.md,
#: "Quantisation"), so these gates rarely delay a stop by an epoch, and never change what is
#: claimed: the claim is always the consensus evaluator's number for the exported model.
#: Measured over 30 runs (mlp, cnn and logreg on digits, cnn and mlp on digits28, 6 seeds
#: each, every epoch's running, end-of-epoch float and integer accuracies recorded): from the
#: third epoch on the running accuracy lagged the end-of-epoch one by at most 3.3 points, and
#: 200 delayed no stop while saving 2-5 % of the loop against 300 (150 delayed one run).
NEAR_TARGET_BPS = 200
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


CPU = torch.device("cpu")
#: cuBLAS needs this workspace setting for deterministic matmuls (torch's reproducibility notes).
CUBLAS_WORKSPACE = ":4096:8"


def default_device() -> str:
    """Where `pole mine` trains unless told otherwise: CUDA when torch sees it, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str) -> torch.device:
    """The torch device called `name` (cpu, cuda, cuda:N), checked to exist here: a
    ValueError that says why otherwise, before any work starts."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return CPU
    if device.type != "cuda":
        raise ValueError(f"device {name!r}: training runs on cpu or cuda")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine "
                         f"(torch {torch.__version__}); use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} "
                         "CUDA device(s)")
    return device


@contextlib.contextmanager
def reproducible_torch(threads: int = 1, device: torch.device = CPU):
    """Single-threaded, deterministic torch kernels for the duration; restores both after.

    On CUDA, kernels without a deterministic version warn instead of failing (training need
    not be reproducible there: nobody re-trains, and what is committed is derived on CPU)."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.set_num_threads(previous_threads)


@dataclass(frozen=True)
class TrainingJob:
    """Everything a run depends on but the device: what the leader sends every replica."""

    spec: ModelSpec
    train: Dataset
    sml: SML
    target_train_bps: int | None
    time_limit_s: float
    seed: int
    hyperparams: Hyperparams


class _TrainingRun:
    """One run's data, model and optimiser, so the loop in train_model reads top to bottom.

    The construction order (data, shuffle generator, torch seed, model) is what makes two
    runs with one seed produce bit-identical weights: keep it. The model is built on CPU
    (the same initial weights whatever the device) and then moved; on CPU `cpu_model` is
    the model itself.
    """

    def __init__(self, job: TrainingJob, replicas: Replicas) -> None:
        self.spec, self.train, self.sml, self.hp = job.spec, job.train, job.sml, job.hyperparams
        self.target_train_bps = job.target_train_bps
        self.replicas, self.device = replicas, replicas.device
        # data: (n, *input_shape) float32, labels (n,) int64; on CPU for export, copies on device
        self.inputs = model_inputs(job.spec, job.sml, job.train)
        self.labels = torch.from_numpy(job.train.labels.astype(np.int64))
        self.device_inputs = self.inputs.to(self.device)
        self.device_labels = self.labels.to(self.device)
        self.shuffle = torch.Generator().manual_seed(job.seed)
        # model and optimiser
        torch.manual_seed(job.seed)
        self.cpu_model = build_torch_model(job.spec)
        on_cpu = self.device == CPU
        self.model = self.cpu_model if on_cpu else copy.deepcopy(self.cpu_model).to(self.device)
        self.optimiser = torch.optim.Adam(
            self.model.parameters(), lr=self.hp.learning_rate, weight_decay=self.hp.weight_decay
        )
        self.loss_fn = nn.CrossEntropyLoss()
        self.network: nn.Module = self.model  # what the loop calls: DDP(model) once replicated
        # the leader's record: the last exported integer model, at which epoch; finite weights
        self.integer_model: IntegerModel | None = None
        self.train_bps, self.exported_epoch, self.last_finite = -1, 0, None

    def replicate(self) -> None:
        """Join the other replicas (DDP); a no-op in a single process."""
        self.network = self.replicas.wrap(self.model)

    def epoch(self, deadline: float) -> tuple[int, float, bool]:
        """One pass in a fresh random order (this replica's shard of it): (running float
        accuracy bps over all replicas, last loss, out of time by the leader's clock)."""
        order = torch.randperm(self.train.n, generator=self.shuffle)
        order = self.replicas.shard(order).to(self.device)
        # scored once at the end: scoring each batch cost about a tenth of a small model's epoch
        logits_seen: list[torch.Tensor] = []
        seen, loss = 0, torch.zeros(())
        for batch_start in range(0, len(order), self.hp.batch_size):
            batch = order[batch_start : batch_start + self.hp.batch_size]
            self.optimiser.zero_grad()
            logits = self.network(self.device_inputs[batch])
            loss = self.loss_fn(logits, self.device_labels[batch])
            loss.backward()
            self.optimiser.step()
            logits_seen.append(logits.detach())
            seen += len(batch)
            if self.replicas.leader_flag(time.monotonic() > deadline):
                return self._running_bps(logits_seen, order[:seen]), loss.item(), True
        return self._running_bps(logits_seen, order[:seen]), loss.item(), False

    def _running_bps(self, logits_seen: list[torch.Tensor], order: torch.Tensor) -> int:
        """Accuracy of the batches' own logits (taken before each step) over all replicas;
        an epoch stops after a batch at the earliest, so there is one."""
        predictions = torch.cat(logits_seen).argmax(dim=1)
        correct = int((predictions == self.device_labels[order]).sum())
        correct_total, seen_total = self.replicas.totals(correct, len(order))
        return correct_total * 10000 // max(seen_total, 1)

    def verdict(self, epochs_done: int, running_bps: int, out_of_time: bool, deadline: float,
                should_stop: Callable[[], bool] | None) -> str | None:
        """(Leader) after an epoch: None to go on, else why training stops. Exports and
        evaluates the integer model when that can decide the stop."""
        if not self.finite():
            return "diverged"  # the last finite weights are exported at the end
        self.last_finite = self.weights()
        target = self.target_train_bps
        if self.near_target(target, running_bps):
            self.integer_model, self.train_bps = self.export()
            self.exported_epoch = epochs_done
            if self.train_bps >= target:
                return "target"
        if should_stop is not None and should_stop():
            return "stopped"
        if out_of_time or time.monotonic() > deadline:
            return "time"
        return None

    def final_export(self, stopped_by: str, epochs_done: int) -> tuple[IntegerModel, int]:
        """(Leader) the integer model of the weights training ended with, and its claim."""
        if stopped_by == "diverged":
            if self.last_finite is None:
                raise TrainingDiverged("weights or biases are not finite: training diverged")
            self.model.load_state_dict(self.last_finite)
        if self.exported_epoch != epochs_done or self.integer_model is None:
            self.integer_model, self.train_bps = self.export()
        return self.integer_model, self.train_bps

    def export(self) -> tuple[IntegerModel, int]:
        """The quantised model and its training accuracy, evaluated as consensus will: on
        CPU, from the float weights alone, wherever they were trained."""
        if self.cpu_model is not self.model:
            self.cpu_model.load_state_dict(self.model.state_dict())  # copies to CPU
        self.cpu_model.eval()
        integer_model = quantize_model(
            self.spec, self.cpu_model, self.inputs, self.sml.output_shift, weight_bits=self.hp.weight_bits
        )
        self.cpu_model.train()
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
            predictions = torch.cat([
                self.model(self.device_inputs[start : start + FORWARD_CHUNK]).argmax(dim=1)
                for start in range(0, self.train.n, FORWARD_CHUNK)
            ])
            correct = int((predictions == self.device_labels).sum())
        self.model.train()
        return correct * 10000 // self.train.n

    def finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def weights(self) -> dict:
        return {k: v.clone() for k, v in self.model.state_dict().items()}


def _epochs(run: _TrainingRun, deadline: float, should_stop: Callable[[], bool] | None,
            progress: bool) -> tuple[str, int]:
    """The loop: epochs until the leader's verdict stops it, or max_epochs ("epochs")."""
    stopped_by, epochs_done = "epochs", 0
    with _progress_bar(run.hp.max_epochs, shown=progress and sys.stderr.isatty()) as bar:
        for epoch in range(run.hp.max_epochs):
            running_bps, loss, out_of_time = run.epoch(deadline)
            epochs_done = epoch + 1
            verdict = run.replicas.leader_verdict(
                partial(run.verdict, epochs_done, running_bps, out_of_time, deadline, should_stop)
            )
            if bar is not None:
                bar.update()
                bar.set_postfix(loss=f"{loss:.4f}", float_bps=running_bps, train_bps=run.train_bps)
            if verdict is not None:
                stopped_by = verdict
                break
    return stopped_by, epochs_done


def _progress_bar(epochs: int, *, shown: bool) -> contextlib.AbstractContextManager:
    """A tqdm bar on a terminal, else none at all: tqdm makes a multiprocessing lock even
    when disabled, which a follower terminated mid-job would leak."""
    return tqdm(total=epochs, desc="training", unit="epoch") if shown else contextlib.nullcontext()


def _replicas_for(device: str | torch.device, replicas: Replicas | None) -> Replicas:
    if replicas is None:
        return SingleProcess(resolve_device(str(device)))
    if torch.device(device) != replicas.device:
        raise ValueError(f"device {device} is not the replica group's {replicas.device}")
    if not replicas.is_leader:
        raise ValueError(f"rank {replicas.rank} is a follower: it trains with serve_training")
    return replicas


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
    device: str | torch.device = "cpu",
    replicas: Replicas | None = None,
) -> TrainResult:
    """Train until the integer model's training accuracy >= target_train_bps (None: run all
    max_epochs), time_limit_s passes, or ``should_stop()`` says the work is stale (asked
    after each epoch: a miner abandons a model once the task or its anchor changes).

    The float model trains on `device`; with `replicas` (the leader of a ReplicaGroup,
    whose device it must be) data-parallel with the followers, which train the same job
    through serve_training. The returned float model is on CPU."""
    if target_train_bps is not None and not 0 <= target_train_bps <= 10000:
        raise ValueError(f"target_train_bps {target_train_bps} outside 0..10000")
    if spec.num_classes != train.num_classes:
        raise ValueError(f"spec has {spec.num_classes} classes, dataset {train.num_classes}")
    replicas = _replicas_for(device, replicas)
    job = TrainingJob(spec, train, sml, target_train_bps, time_limit_s, seed, hyperparams)
    start = time.monotonic()
    deadline = start + time_limit_s
    with reproducible_torch(device=replicas.device):
        run = _TrainingRun(job, replicas)
        with replicas.lockstep():
            replicas.send_job(job)
            run.replicate()
            stopped_by, epochs_done = _epochs(run, deadline, should_stop, progress)
        integer_model, train_bps = run.final_export(stopped_by, epochs_done)

    return TrainResult(
        integer_model=integer_model,
        float_model=run.model.cpu(),
        train_bps=train_bps,
        met_target=target_train_bps is not None and train_bps >= target_train_bps,
        stopped_by=stopped_by,
        epochs=epochs_done,
        seconds=time.monotonic() - start,
    )


def train_replica(job: TrainingJob, replicas: ReplicaGroup) -> nn.Sequential:
    """(Followers) train `job` in step with the leader, which decides when it ends; return
    this replica's final float weights on CPU (the same as the leader's: DDP)."""
    with reproducible_torch(device=replicas.device):
        run = _TrainingRun(job, replicas)
        with replicas.lockstep():
            run.replicate()
            _epochs(run, time.monotonic() + job.time_limit_s, should_stop=None, progress=False)
    return run.model.cpu()


def serve_training(replicas: ReplicaGroup) -> None:
    """A follower's life: train every job the leader sends, until it sends none."""
    while (job := replicas.receive_job()) is not None:
        with contextlib.suppress(JobAborted):  # the leader gave up on it; wait for the next
            train_replica(job, replicas)
