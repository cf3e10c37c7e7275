"""Data-parallel training across processes: torch.distributed DDP, gloo on CPU, nccl on CUDA.

One leader (rank 0) and followers. The leader is the miner: it talks to the node, decides
and exports. Followers only train their shard of each job the leader sends (docs/ML.md,
"Devices and several processes"):

    job        the leader broadcasts a TrainingJob (spec, training set, SML, target, seed,
               hyperparameters; pickled) on a gloo control group; every rank builds the same
               run from it (same seed: same initial weights)
    model      DDP(model): rank 0's parameters are broadcast once, then gradients are
               averaged after every backward, so every replica takes the same optimiser
               steps and holds the same weights (tested)
    data       each epoch's order (one seeded generator, the same on every rank) is split
               as DistributedSampler splits it: padded to a multiple of the world size,
               rank r takes every world_size-th index from r
    decisions  the leader's clock and judgement: after every batch it broadcasts whether
               its time is up, after every epoch its verdict (go on, or why training
               stops); followers follow. Only the leader quantises and evaluates, on CPU.
    end        the leader broadcasts None; every rank destroys its process group

`SingleProcess` is the group of one with the same interface, every method the identity, so
train_model's single-process path is the code it always was. Launch: `open_replicas` with
the `Placement` from `plan_replicas`: `pole mine --nproc N` makes this process rank 0 and
spawns ranks 1..N-1 (torch.multiprocessing) on a free localhost port; under torchrun every
rank joins through RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.

Failures: an error at a decision point (the leader's export, its node check) is broadcast
as an abort, so followers drop the job and wait for the next one. Anything else that goes
wrong mid-job leaves the ranks out of step for good: `ReplicaGroupBroken`, and the miner
stops. Followers never outlive the leader: a dead leader's sockets close under their
collectives, torch's spawn gives them SIGINT when their parent dies, and the leader
terminates (then kills) spawned followers that have not exited on their own.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.multiprocessing.spawn import ProcessContext, ProcessException
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger("pole.miner")

LOCALHOST = "127.0.0.1"
#: Followers wait on the control group for the leader's next job for as long as the miner
#: finds no task; a dead leader ends the wait at once (its sockets close), not this timeout.
JOB_WAIT = datetime.timedelta(days=365)
#: How long spawned processes may take to start (import torch) and meet on the store.
RENDEZVOUS_TIMEOUT = datetime.timedelta(minutes=2)
#: Seconds spawned followers get to exit after the leader's last word, then again after
#: SIGTERM, before SIGKILL.
EXIT_GRACE_S = 10.0
#: The verdict a leader broadcasts when its own decision failed: followers drop the job.
ABORTED = "aborted by the leader"


class ReplicaGroupBroken(RuntimeError):
    """A collective failed or a rank left mid-job: the replicas are out of step for good."""


class JobAborted(Exception):
    """(Followers) the leader gave up on the current job at a decision point."""


@dataclass(frozen=True)
class Placement:
    """Where this process trains: rank `rank` of `world_size`, on `device`."""

    world_size: int
    rank: int
    device: torch.device
    launch: bool = False  # this process spawns ranks 1..world_size-1 (pole mine --nproc)

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"


def plan_replicas(device: torch.device, nproc: int, environ: Mapping[str, str]) -> Placement:
    """The placement of this process: `nproc` processes launched here, or the ranks a
    launcher (torchrun) described in `environ`. ValueError names a bad combination; nothing
    has started then. With several CUDA processes, rank r trains on cuda:LOCAL_RANK."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    launched = environ.get("WORLD_SIZE") is not None
    if launched and nproc > 1:
        raise ValueError("--nproc and a launcher (torchrun: WORLD_SIZE is set) both start "
                         "processes: use one of them")
    if launched:
        missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in environ]
        if missing:
            raise ValueError(f"WORLD_SIZE is set but not {', '.join(missing)}: start the "
                             "processes with torchrun, or use --nproc")
        world, rank = int(environ["WORLD_SIZE"]), int(environ["RANK"])
        local_rank = int(environ.get("LOCAL_RANK", rank))
    else:
        world, rank, local_rank = nproc, 0, 0
    if world == 1:
        return Placement(1, 0, device)
    if device.type == "cuda":
        if device.index is not None:
            raise ValueError(f"--device {device} with {world} processes: give --device cuda, "
                             "each process trains on cuda:LOCAL_RANK")
        highest = local_rank if launched else world - 1  # the spawned ranks use cuda:1..N-1
        if highest >= torch.cuda.device_count():
            raise ValueError(f"{world} CUDA processes need cuda:0..cuda:{highest}; this "
                             f"machine has {torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", local_rank)
    return Placement(world, rank, device, launch=not launched)


def shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s part of one epoch's order, as DistributedSampler splits a dataset:
    padded (from its start) to a multiple of world_size, every world_size-th index from
    `rank`. Every rank gets the same number of samples, hence the same number of batches."""
    total = -(-len(order) // world_size) * world_size
    padded = order.repeat(-(-total // len(order)))[:total]
    return padded[rank:total:world_size]


class SingleProcess:
    """The group of one: no collectives, every method the identity."""

    rank, world_size, is_leader = 0, 1, True

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> "SingleProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        return order

    def leader_flag(self, flag: bool) -> bool:
        return flag

    def totals(self, *counts: int) -> tuple[int, ...]:
        return counts

    def leader_verdict(self, decide: Callable[[], Any]) -> Any:
        return decide()

    def send_job(self, job: object) -> None:
        return None

    @contextlib.contextmanager
    def lockstep(self) -> Iterator[None]:
        yield


class ReplicaGroup:
    """This process's place in a data-parallel group (made by `open_replicas`)."""

    def __init__(self, placement: Placement, control: Any,
                 followers: Optional[ProcessContext] = None) -> None:
        self.rank, self.world_size = placement.rank, placement.world_size
        self.device, self.backend = placement.device, placement.backend
        self._control = control  # gloo group: jobs, flags, verdicts (CPU tensors)
        self._followers = followers  # the spawned ranks (pole mine --nproc)
        self._in_lockstep = False
        self._broken = False
        self._interrupted = False  # broken by Ctrl-C/SIGTERM: followers' errors are expected

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def spawned_pids(self) -> list[int]:
        """The process ids of the followers this process spawned (none under torchrun)."""
        return [] if self._followers is None else self._followers.pids()

    def __enter__(self) -> "ReplicaGroup":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- inside a job (every rank calls these in the same order) -------------------------

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around `model` (already on self.device): gradients averaged over the ranks."""
        device_ids = [self.device] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        return shard(order, self.rank, self.world_size)

    def leader_flag(self, flag: bool) -> bool:
        """The leader's `flag` on every rank (the leader's clock decides time limits)."""
        value = torch.tensor([int(flag)], dtype=torch.int64)
        dist.broadcast(value, src=0, group=self._control)
        return bool(value.item())

    def totals(self, *counts: int) -> tuple[int, ...]:
        """Each count summed over the ranks."""
        value = torch.tensor(counts, dtype=torch.int64)
        dist.all_reduce(value, group=self._control)
        return tuple(int(v) for v in value)

    def leader_verdict(self, decide: Callable[[], Any]) -> Any:
        """`decide()` on the leader, its result on every rank. If it raises, followers are
        told to drop the job (JobAborted) and the leader re-raises: the group stays usable."""
        if not self.is_leader:
            verdict = self._receive()
            if verdict == ABORTED:
                self._in_lockstep = False
                raise JobAborted(ABORTED)
            return verdict
        try:
            verdict = decide()
        except BaseException:
            self._send(ABORTED)
            self._in_lockstep = False
            raise
        self._send(verdict)
        return verdict

    @contextlib.contextmanager
    def lockstep(self) -> Iterator[None]:
        """Around the part of a job where every rank runs the same collectives: an error
        escaping it (other than a clean abort) breaks the group."""
        if self._broken:
            raise ReplicaGroupBroken("an earlier training job failed mid-way; the training "
                                     "processes are out of step (restart the miner)")
        self._in_lockstep = True
        try:
            yield
        except BaseException as error:
            if self._in_lockstep:
                self._broken = True
                self._interrupted = not isinstance(error, Exception)
                if isinstance(error, Exception):
                    raise ReplicaGroupBroken(
                        f"training on {self.world_size} processes failed on rank {self.rank}: "
                        f"{type(error).__name__}: {error}"
                    ) from error
            raise
        finally:
            self._in_lockstep = False

    # -- between jobs ---------------------------------------------------------------------

    def send_job(self, job: object) -> None:
        """(Leader) the next job for every follower."""
        self._send(job)

    def receive_job(self) -> Any:
        """(Followers) the leader's next job; None when the leader is done."""
        return self._receive()

    def close(self) -> None:
        """Tell followers there is no more work (if they are listening), destroy the process
        group, and reap spawned followers (terminating any that do not exit)."""
        told = False
        try:
            if self.is_leader and not self._broken and not self._in_lockstep:
                self._send(None)
                told = True
        except RuntimeError as error:  # followers already gone (Ctrl-C reaches them too)
            log.debug("could not tell the training processes to stop: %s", error)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
            if self._followers is not None:
                _reap(self._followers, told_to_stop=told, interrupted=self._interrupted)

    def _send(self, value: object) -> None:
        dist.broadcast_object_list([value], src=0, group=self._control)

    def _receive(self) -> Any:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=self._control)
        return box[0]


Replicas = Union[SingleProcess, ReplicaGroup]
Serve = Callable[[ReplicaGroup], None]


def open_replicas(placement: Placement, serve: Serve) -> Replicas:
    """This process's group, to use as a context manager (closing it ends the followers).

    One process: SingleProcess. `placement.launch`: this process becomes rank 0 and spawns
    ranks 1..N-1, each running `serve(group)` (a module-level function: it is pickled by
    reference) until the leader closes. Otherwise (torchrun) join the launcher's group."""
    if placement.world_size == 1:
        return SingleProcess(placement.device)
    if placement.device.type == "cuda":
        torch.cuda.set_device(placement.device)  # nccl's device for this rank
    if not placement.launch:
        dist.init_process_group(placement.backend, init_method="env://",
                                rank=placement.rank, world_size=placement.world_size)
        return _group(placement)
    store = dist.TCPStore(LOCALHOST, 0, placement.world_size, is_master=True,
                          timeout=RENDEZVOUS_TIMEOUT, wait_for_workers=False)  # port 0: a free one
    followers = mp.spawn(_follower_main, nprocs=placement.world_size - 1, join=False,
                         args=(placement, store.port, serve))
    try:
        dist.init_process_group(placement.backend, store=store, rank=0,
                                world_size=placement.world_size)
        return _group(placement, followers)
    except BaseException as error:
        _reap(followers, told_to_stop=False, interrupted=isinstance(error, KeyboardInterrupt))
        raise


def _group(placement: Placement, followers: Optional[ProcessContext] = None) -> ReplicaGroup:
    """The control group (gloo, long timeout: followers wait in it between jobs)."""
    control = dist.new_group(backend="gloo", timeout=JOB_WAIT)
    return ReplicaGroup(placement, control, followers)


def _follower_main(index: int, leader: Placement, port: int, serve: Serve) -> None:
    """A spawned follower (rank index + 1): join the leader's store, serve, close."""
    rank = index + 1
    device = torch.device("cuda", rank) if leader.device.type == "cuda" else leader.device
    placement = Placement(leader.world_size, rank, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    store = dist.TCPStore(LOCALHOST, port, leader.world_size, is_master=False,
                          timeout=RENDEZVOUS_TIMEOUT)
    dist.init_process_group(placement.backend, store=store, rank=rank,
                            world_size=placement.world_size)
    with _group(placement) as group:
        serve(group)


def _reap(followers: ProcessContext, *, told_to_stop: bool, interrupted: bool = False) -> None:
    """Wait for spawned followers to exit (when they were told to stop; otherwise they are
    stuck in a collective that will never complete), then terminate, then kill, any still
    running. A follower's own error is logged, quietly if the leader was interrupted mid-job
    (that is what broke the follower's collectives)."""
    give_up_at = time.monotonic() + (EXIT_GRACE_S if told_to_stop else 0.0)
    try:
        while not followers.join(timeout=max(0.0, give_up_at - time.monotonic()),
                                 grace_period=EXIT_GRACE_S):
            if time.monotonic() >= give_up_at:
                break
    except ProcessException as error:  # join has already ended the others
        level = logging.DEBUG if interrupted else logging.WARNING
        log.log(level, "a training process failed: %s", str(error).strip().splitlines()[-1])
        log.debug("%s", error)
    for process in followers.processes:
        if process.is_alive():
            process.terminate()
            process.join(EXIT_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()
