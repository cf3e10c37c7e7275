"""Training on a device and across processes (miner/distributed.py, `pole mine --device/--nproc`).

Real processes throughout: the followers are spawned by `open_replicas` exactly as
`pole mine --nproc` spawns them (torch.multiprocessing, gloo on localhost), and the last test
runs `pole mine --nproc 2` against a real `pole node --dev`. No GPU here: the CUDA paths are
covered only by the refusals of devices this machine does not have.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import psutil
import pytest
import torch
from eth_utils import encode_hex
from torch.utils.data import DistributedSampler

from miner import mine_cli
from miner.bonds import ensure_bonded
from miner.datasets import load_builtin, split_dataset
from miner.distributed import (
    JobAborted,
    Placement,
    ReplicaGroup,
    ReplicaGroupBroken,
    open_replicas,
    plan_replicas,
    shard,
)
from miner.integer_eval import check_compatible, evaluate_integer_model
from miner.integer_model import check_model_matches_task, decode_model, encode_model
from miner.mining import MinerConfig
from miner.model_spec import build_spec, model_spec_digest
from miner.sml import sml_for
from miner.training import (
    Hyperparams,
    default_device,
    resolve_device,
    serve_training,
    train_model,
    train_replica,
)
from pole_chain.devnet.node_process import child_environment
from pole_chain.devnet.probes import wait_until
from tests.mining.stderr_lines import StderrLines
from tests.mining.test_mining import (
    MINER,
    MINER_ADDRESS,
    WAIT_S,
    latest,
    parse,
    post_task,
    release_for,
    task_data,
    wait_announcement,
)
from vm_hooks.task import TaskStatus

CPU = torch.device("cpu")
TARGET_BPS = 9500
ANCHOR, SML_MINER = bytes([7]) * 32, bytes(range(20))


@pytest.fixture(scope="module")
def digits():
    return split_dataset(load_builtin("digits"), 0.2, seed=1, test_salt=bytes(32))


# --------------------------------------------------------------------------------------
# The shard and the placement
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 10, 1437])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shard_splits_an_epoch_as_distributed_sampler_does(n, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    for rank in range(world):
        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False)
        assert shard(order, rank, world).tolist() == order[list(sampler)].tolist()
    sizes = {len(shard(order, rank, world)) for rank in range(world)}
    assert sizes == {-(-n // world)}  # every rank the same number of batches


def test_placements_from_nproc_and_from_torchrun_variables():
    assert plan_replicas(CPU, 1, {}) == Placement(1, 0, CPU)
    assert plan_replicas(CPU, 3, {}) == Placement(3, 0, CPU, launch=True)
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert plan_replicas(CPU, 1, torchrun) == Placement(2, 1, CPU)
    assert plan_replicas(CPU, 1, dict(torchrun, WORLD_SIZE="1", RANK="0")) == Placement(1, 0, CPU)
    assert plan_replicas(CPU, 2, {}).backend == "gloo"
    with pytest.raises(ValueError, match="--nproc and a launcher"):
        plan_replicas(CPU, 2, torchrun)
    with pytest.raises(ValueError, match="not RANK, MASTER_PORT"):
        plan_replicas(CPU, 1, {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"})
    with pytest.raises(ValueError, match="at least 1"):
        plan_replicas(CPU, 0, {})


# --------------------------------------------------------------------------------------
# --device
# --------------------------------------------------------------------------------------


def test_device_flag_parses_and_devices_this_machine_lacks_are_refused(capsys):
    assert parse("--device", "cpu").device == CPU
    assert parse().device == resolve_device(default_device())
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    refused = {"cuda:99": "CUDA", "gpu": "unknown device", "mps": "runs on cpu or cuda"}
    if not torch.cuda.is_available():
        refused["cuda"] = "CUDA is not available on this machine"
    for name, reason in refused.items():
        with pytest.raises(SystemExit) as exit_info:
            parse("--device", name)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "argument --device" in err and reason in err, err
    with pytest.raises(ValueError, match="CUDA"):
        MinerConfig(device="cuda:99")


def test_training_on_a_device_this_machine_lacks_is_refused_before_any_work(digits):
    train, _ = digits
    spec = build_spec("logreg", train.d, train.num_classes)
    with pytest.raises(ValueError, match="CUDA"):
        train_model(spec, train, sml_for(ANCHOR, SML_MINER, train.d), target_train_bps=None,
                    time_limit_s=1, seed=0, device="cuda:99")


def test_bad_process_plans_end_the_command_before_it_contacts_the_node(capsys, monkeypatch):
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    args = parse("--nproc", "2", "--key", encode_hex(MINER.key), "--rpc", "http://127.0.0.1:9",
                 "--node-timeout", "60")
    # 2, a usage error: waiting for the node (nobody listens on port 9) would end in 1.
    assert mine_cli.run(args) == 2
    assert "--nproc and a launcher" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--nproc", "0")


# --------------------------------------------------------------------------------------
# Two processes, one model
# --------------------------------------------------------------------------------------


def serve_and_keep_weights(replicas: ReplicaGroup, out: Path) -> None:
    """serve_training, and after each job this follower's weights (or "aborted") for the test."""
    jobs = 0
    while (job := replicas.receive_job()) is not None:
        jobs += 1
        try:
            model = train_replica(job, replicas)
        except JobAborted:
            (out / f"job{jobs}.aborted").touch()
            continue
        torch.save(model.state_dict(), out / f"job{jobs}.pt")


def test_two_processes_train_one_valid_model_with_identical_replicas(digits, tmp_path):
    train, test = digits
    sml = sml_for(ANCHOR, SML_MINER, train.d)
    spec = build_spec("mlp", train.d, train.num_classes)
    placement = plan_replicas(CPU, 2, {})

    def fail_after_one_epoch() -> bool:
        raise RuntimeError("the node check failed")

    with open_replicas(placement, partial(serve_and_keep_weights, out=tmp_path)) as group:
        follower = psutil.Process(group.spawned_pids[0])
        # A failure at the leader's decision point drops the job on every rank, cleanly:
        with pytest.raises(RuntimeError, match="the node check failed"):
            train_model(spec, train, sml, target_train_bps=None, time_limit_s=60, seed=0,
                        should_stop=fail_after_one_epoch, replicas=group)
        # ... and the same processes train the next job.
        result = train_model(spec, train, sml, target_train_bps=TARGET_BPS, time_limit_s=60,
                             seed=0, hyperparams=Hyperparams(max_epochs=40), replicas=group)
    assert not follower.is_running()  # closing the group ended the follower
    assert (tmp_path / "job1.aborted").exists()

    # Both ranks hold the same weights (DDP: same initial weights, averaged gradients).
    follower_weights = torch.load(tmp_path / "job2.pt")
    leader_weights = result.float_model.state_dict()
    assert follower_weights.keys() == leader_weights.keys()
    assert all(torch.equal(follower_weights[k], leader_weights[k]) for k in leader_weights)

    # The integer model meets the target through the SML, and the blob passes what a
    # node checks before and during evaluation (seal_verifier: decode, spec, compatibility).
    assert result.stopped_by == "target" and result.met_target
    blob = encode_model(result.integer_model)
    model = decode_model(blob)
    check_model_matches_task(model, model_spec_digest(spec))
    check_compatible(model, sml, train.d)
    assert evaluate_integer_model(model, sml, train) == result.train_bps >= TARGET_BPS
    assert evaluate_integer_model(model, sml, test) > 9000


def test_a_lost_follower_breaks_the_group_with_a_clear_error(digits):
    train, _ = digits
    sml = sml_for(ANCHOR, SML_MINER, train.d)
    spec = build_spec("logreg", train.d, train.num_classes)
    with open_replicas(plan_replicas(CPU, 2, {}), serve_training) as group:
        follower = psutil.Process(group.spawned_pids[0])
        follower.kill()  # its parent (this process, through the group) reaps it
        wait_until(lambda: follower.status() == psutil.STATUS_ZOMBIE, WAIT_S, "the follower killed", pause_s=0.02)
        with pytest.raises(ReplicaGroupBroken, match="2 processes failed on rank 0"):
            train_model(spec, train, sml, target_train_bps=None, time_limit_s=10, seed=0,
                        hyperparams=Hyperparams(max_epochs=2), replicas=group)
        with pytest.raises(ReplicaGroupBroken, match="out of step"):
            train_model(spec, train, sml, target_train_bps=None, time_limit_s=10, seed=0,
                        hyperparams=Hyperparams(max_epochs=2), replicas=group)


# --------------------------------------------------------------------------------------
# `pole mine --nproc 2` against a node
# --------------------------------------------------------------------------------------


def test_pole_mine_on_two_processes_seals_and_stops_cleanly_on_ctrl_c(snapshot_w3, devnode):
    w3 = snapshot_w3
    data = task_data(1)
    ensure_bonded(w3, MINER)  # bonded before the task's block: `pole mine` sends nothing on start
    task = post_task(w3, data)
    head = latest(w3)
    env = dict(child_environment(), **{mine_cli.MINER_KEY_VARIABLE: encode_hex(MINER.key)})
    process = subprocess.Popen(
        [sys.executable, "-m", "pole_chain", "mine", "--rpc", devnode.url, "--poll", "0.05",
         "--no-progress", "--nproc", "2", "--device", "cpu"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    stderr = StderrLines(process.stderr, WAIT_S)
    wait_line, seen = stderr.wait_line, stderr.seen

    try:
        started = wait_line("training on 2 processes (cpu, gloo; spawned pids ")
        (pid,) = map(int, re.search(r"spawned pids ([\d ]+)\)", started).group(1).split())
        follower = psutil.Process(pid)
        assert follower.ppid() == process.pid
        announcement = wait_announcement(w3, task, head.hash)
        release_for(w3, data, task, head.hash, [announcement.model_commitment])
        assert "sealed block" in wait_line("sealed block")
        process.send_signal(signal.SIGINT)  # the leader only, as a supervisor would
        assert process.wait(timeout=WAIT_S) == 0
        assert not follower.is_running()  # reaped by the leader before it exited: no orphan
        assert not any("Traceback" in line for line in seen), "".join(seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    settled = w3.pole.get_task(task.task_id)
    assert settled.status is TaskStatus.SETTLED and settled.result.winner == MINER_ADDRESS
