import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from miner.datasets import load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model
from miner.integer_model import encode_model, model_digest
from miner.model_spec import build_spec
from miner.sml import sml_for
from miner.training import Hyperparams, build_torch_model, train_model

REPO = Path(__file__).resolve().parents[2]
PARENT, MINER = bytes([7]) * 32, bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")


@pytest.fixture(scope="module")
def digits():
    return split_dataset(load_builtin("digits"), 0.2, seed=1, test_salt=bytes(32))


def test_torch_model_follows_spec():
    spec = build_spec("cnn", 64, 10, (1, 8, 8))
    model = build_torch_model(spec)
    assert len(model) == len(spec.layers)
    assert model(torch.zeros(3, 8, 8, 8)).shape == (3, 10)  # E = 8 local SML maps a pixel


def test_mlp_meets_target_within_seconds(digits):
    train, test = digits
    sml = sml_for(PARENT, MINER, train.d)
    spec = build_spec("mlp", train.d, train.num_classes)
    result = train_model(spec, train, sml, target_train_bps=9800, time_limit_s=20, seed=0, progress=True)
    assert result.met_target and result.stopped_by == "target"
    assert result.seconds < 10
    assert result.train_bps >= 9800
    assert evaluate_integer_model(result.integer_model, sml, train) == result.train_bps
    assert evaluate_integer_model(result.integer_model, sml, test) > 9300


def test_stops_at_time_limit_and_epoch_cap(digits):
    train, _ = digits
    sml = sml_for(PARENT, MINER, train.d)
    spec = build_spec("mlp", train.d, train.num_classes)
    timed = train_model(spec, train, sml, target_train_bps=10000, time_limit_s=0.0, seed=0)
    assert timed.stopped_by == "time" and timed.epochs == 1 and not timed.met_target
    capped = train_model(
        spec, train, sml, target_train_bps=None, time_limit_s=60, seed=0,
        hyperparams=Hyperparams(max_epochs=2, weight_bits=16),
    )
    assert capped.stopped_by == "epochs" and capped.epochs == 2
    assert capped.integer_model.weight_widths == (2, 2)
    with pytest.raises(ValueError, match="target"):
        train_model(spec, train, sml, target_train_bps=10001, time_limit_s=1, seed=0)
    with pytest.raises(ValueError, match="SML"):
        train_model(spec, train, sml_for(PARENT, MINER, 63), target_train_bps=None, time_limit_s=1, seed=0)


def test_training_restores_torch_settings(digits):
    train, _ = digits
    torch.set_num_threads(2)
    spec = build_spec("logreg", train.d, train.num_classes)
    train_model(spec, train, sml_for(PARENT, MINER, train.d), target_train_bps=None,
                time_limit_s=10, seed=0, hyperparams=Hyperparams(max_epochs=1))
    assert torch.get_num_threads() == 2
    assert not torch.are_deterministic_algorithms_enabled()


# Run in fresh interpreters with different thread settings: train (same seed) and evaluate.
DETERMINISM_SCRIPT = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from eth_utils import keccak
from miner.datasets import load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model, integer_logits
from miner.integer_model import decode_model, encode_model
from miner.model_spec import build_spec
from miner.sml import model_sml
from miner.training import Hyperparams, train_model
train, test = split_dataset(load_builtin("digits"), 0.2, seed=1, test_salt=bytes(32))
out = {}
for name in ("mlp", "cnn"):
    spec = build_spec(name, 64, 10, (1, 8, 8))
    sml = model_sml(bytes([7]) * 32, bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266"),
                    spec.input_shape, 64)
    result = train_model(spec, train, sml, target_train_bps=None, time_limit_s=120, seed=5,
                         hyperparams=Hyperparams(max_epochs=3))
    blob = encode_model(result.integer_model)
    model = decode_model(blob)
    out[name] = [keccak(blob).hex(), evaluate_integer_model(model, sml, test),
                 keccak(integer_logits(model, sml, test.features).tobytes()).hex()]
print(json.dumps(out))
"""


def run_isolated(threads: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    return subprocess.Popen(
        [sys.executable, "-c", DETERMINISM_SCRIPT, str(threads)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_same_seed_same_model_bytes_and_scores_across_processes_and_threads(digits):
    runs = [run_isolated(1), run_isolated(2)]
    outputs = []
    for proc in runs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]

    # and in this process, with whatever thread count the test runner has
    train, test = digits
    sml = sml_for(PARENT, MINER, train.d)
    spec = build_spec("mlp", 64, 10)
    again = [
        train_model(spec, train, sml, target_train_bps=None, time_limit_s=120, seed=5,
                    hyperparams=Hyperparams(max_epochs=3))
        for _ in range(2)
    ]
    assert encode_model(again[0].integer_model) == encode_model(again[1].integer_model)
    assert model_digest(again[0].integer_model).hex() == outputs[0]["mlp"][0]
    assert evaluate_integer_model(again[0].integer_model, sml, test) == outputs[0]["mlp"][1]
