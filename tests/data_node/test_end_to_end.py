"""One PoLe height with real processes: a node, two miners, a data node, model delivery.

    node      `pole node --mine-idle` (a full node: idle blocks keep coming while the miners
              train, so the PoLe blocks land on descendants of the task's anchor)
    miners    two `pole mine --once` processes with different seeds; each bonds on start
              (the data node admits bonded miners only), before the task is posted
    data node post_task, then release in auto mode (waits for both announcements)
    checks    both miners sealed; the block with the best test accuracy (every revealed
              model re-evaluated here) is canonical, above idle blocks after the anchor,
              and was paid the escrow;
              `pole model get` writes a model that predicts the raw held-out data with
              the test accuracy the winning block claims; `pole task status` says settled
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from eth_utils import to_canonical_address
from web3 import Web3

from miner.integer_eval import evaluate_integer_model
from miner.integer_model import decode_model
from miner.sml import model_sml
from miner.pole_module import pole_web3
from miner.registry_client import registry_contract
from pole_chain.clients.data_node import load_test_set, post_task, release
from pole_chain.devnet.probes import wait_until
from tests.data_node import start_bonded_miners
from pole_chain.demo.demo import REPO_ROOT, Children, held_out_source_rows, pole_command, start_node
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import MINER_BOND
from vm_hooks.seal import BlockKind, pole_score, read_block_seal
from vm_hooks.task import TaskStatus
from pole_chain.clients.model_delivery import load_delivered_model

ACCOUNTS = dev_accounts()
POSTER, MINERS = ACCOUNTS[0], ACCOUNTS[1:3]
REWARD = 10**18
MINER_TIMEOUT_S = 90


@pytest.fixture
def children(tmp_path):
    processes = Children(tmp_path)
    yield processes
    processes.stop_all()


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *pole_command(*argv)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )


def test_best_test_accuracy_wins_and_its_model_is_delivered(tmp_path, children):
    _, url = start_node(children, tmp_path / "chain", "--mine-idle")
    w3 = pole_web3(url)
    miners = start_bonded_miners(children, url, MINERS, MINER_TIMEOUT_S)
    registry = registry_contract(w3)
    assert w3.eth.get_balance(registry.address) == len(MINERS) * MINER_BOND
    before = {a.address: w3.eth.get_balance(a.address) for a in MINERS}

    task_id = post_task(
        w3, POSTER, dataset="digits", model="mlp", reward_wei=REWARD, min_train_bps=9000,
        time_limit_s=120, solutions_wanted=2, seed=1, workdir=tmp_path / "data-node",
    )
    assert w3.eth.get_balance(registry.address) == len(MINERS) * MINER_BOND + REWARD
    # The miners train meanwhile. The release waits for an idle block on the anchor, so the
    # PoLe blocks must land on a descendant of it (how fast idle proof of work comes is luck).
    best = w3.pole.best_task()
    assert best is not None and best.task_id == task_id
    wait_until(lambda: w3.eth.block_number > best.anchor.number, timeout=MINER_TIMEOUT_S,
               what="an idle block on the anchor")
    outcome = release(w3, POSTER, task_id, tmp_path / "data-node", wait_for=2, timeout_s=60,
                      poll_s=0.2)
    assert len(outcome.admitted) == 2

    deadline = time.monotonic() + MINER_TIMEOUT_S
    for miner in miners:
        miner.process.wait(timeout=max(1, deadline - time.monotonic()))
        assert miner.process.returncode == 0, f"{miner.name} did not seal:\n{miner.log_tail()}"

    # Every admitted model, re-evaluated here on the held-out data: the best one must win.
    test_set = load_test_set(tmp_path / "data-node", task_id)
    scores = {}
    for announcement in outcome.admitted:
        model = decode_model(w3.pole.get_model(announcement.model_commitment))
        sml = model_sml(outcome.anchor_hash, announcement.miner, model.spec.input_shape, test_set.d)
        scores[announcement.miner] = evaluate_integer_model(model, sml, test_set)
    task = w3.pole.get_task(task_id)
    assert task.status is TaskStatus.SETTLED
    result = task.result
    assert result.test_bps == max(scores.values())
    assert scores[result.winner] == result.test_bps
    head = w3.eth.get_block(result.block_number)
    assert to_canonical_address(head["miner"]) == result.winner
    assert head["difficulty"] == pole_score(result.test_bps)
    anchor = w3.eth.get_block(outcome.anchor_hash)
    assert result.block_number > anchor["number"] + 1  # idle blocks between anchor and winner
    between = w3.eth.get_block(anchor["number"] + 1)
    assert read_block_seal(between).kind is BlockKind.IDLE
    # The escrow went to the winner (bonded already, miners send no more transactions, so
    # balances move by it alone).
    for account in MINERS:
        paid = w3.eth.get_balance(account.address) - before[account.address]
        assert paid == (REWARD if to_canonical_address(account.address) == result.winner else 0)
    assert w3.eth.get_balance(registry.address) == len(MINERS) * MINER_BOND  # the bonds stay

    # `pole model get`, then the delivered module on the raw held-out data.
    out = tmp_path / "model"
    got = run_cli("model", "get", str(task_id), "--rpc", url, "--out", str(out))
    assert got.returncode == 0, got.stderr
    raw, labels = held_out_source_rows(tmp_path / "data-node", task_id)  # sklearn's 0..16 values
    predictions = load_delivered_model(out).predict(raw)
    correct = int((predictions == labels).sum())
    assert correct * 10000 // test_set.n == result.test_bps

    shown = run_cli("task", "status", str(task_id), "--rpc", url)
    assert shown.returncode == 0, shown.stderr
    assert f"Task {task_id}: settled" in shown.stdout
    assert Web3.to_checksum_address(result.winner) in shown.stdout

    listed = run_cli("task", "list", "--rpc", url)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == (
        f"task {task_id}  settled  reward 1 ETH, value 0.008333 ETH/s, won in block "
        f"#{result.block_number} by {Web3.to_checksum_address(result.winner)}: training "
        f"{result.train_bps / 100:.2f} %, test {result.test_bps / 100:.2f} %\n"
    )

    refused = run_cli("model", "get", "99", "--rpc", url, "--out", str(tmp_path / "none"))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
