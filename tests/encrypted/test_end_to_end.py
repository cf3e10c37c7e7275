"""An encrypted task for one PoLe height with real processes: a node, two miners, a data node.

    node      `pole node --mine-idle` (idle blocks keep coming while the miners work)
    miners    two `pole mine --once` processes with different seeds; each bonds on start
    data node post_task(encrypt=True) on the wine set with logreg (13 features: encryption
              and decryption take seconds), and on 300 8x8 digits written to an .npz with
              the cnn, whose keys are for its local SML; the clear training set stays on
              the data node
    release   auto mode: while it waits for both announcements it serves each miner's key
              request (the key service); the miners decrypt relu(S x), train, announce,
              reveal and seal on the released test set
    checks    both miners got keys and sealed; the clear training set reached the node only
              with the release; the task settled for the miner whose model has the best
              test accuracy (each admitted model re-evaluated here on the released test
              set), and that miner was paid the reward; the data node fetches the
              winning model, its claimed test accuracy re-checked
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from eth_utils import to_canonical_address
from web3.exceptions import Web3RPCError

from miner.datasets import decode_dataset, load_builtin
from miner.encrypted_tasks import decode_encrypted_training_set
from miner.integer_eval import evaluate_integer_model
from miner.integer_model import decode_model
from miner.pole_module import error_code, pole_web3
from miner.registry_client import registry_contract
from miner.sml import LocalSML, model_sml
from pole_chain.clients.data_node import load_test_set, post_task, release
from pole_chain.clients.model_delivery import fetch_model
from pole_chain.demo.demo import Children, start_node
from pole_chain.devnet.probes import wait_until
from tests.data_node import start_bonded_miners
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import MINER_BOND
from vm_hooks.task import TaskStatus

ACCOUNTS = dev_accounts()
POSTER, MINERS = ACCOUNTS[0], ACCOUNTS[1:3]
REWARD = 10**18
TIMEOUT_S = 120
RESOURCE_NOT_FOUND = -32001


@pytest.fixture
def children(tmp_path):
    processes = Children(tmp_path)
    yield processes
    processes.stop_all()


def digit_images(directory) -> str:
    """300 of the built-in digits as (n, 8, 8) images in an .npz, as a user would bring."""
    digits = load_builtin("digits")
    path = directory / "digits300.npz"
    np.savez(path, X=digits.features[:300].reshape(300, 8, 8), y=digits.labels[:300])
    return str(path)


@pytest.mark.parametrize("model", ["logreg", "cnn"])
def test_encrypted_task_is_decrypted_trained_and_pays_the_best_test_accuracy(tmp_path, children, model):
    _, url = start_node(children, tmp_path / "chain", "--mine-idle")
    w3 = pole_web3(url)
    miners = start_bonded_miners(children, url, MINERS, TIMEOUT_S)
    registry = registry_contract(w3)
    before = {a.address: w3.eth.get_balance(a.address) for a in MINERS}

    workdir = tmp_path / "data-node"
    dataset, target = ("wine", 8500) if model == "logreg" else (digit_images(tmp_path), 8000)
    task_id = post_task(
        w3, POSTER, dataset=dataset, model=model, reward_wei=REWARD, min_train_bps=target,
        time_limit_s=240, solutions_wanted=2, seed=1, workdir=workdir, encrypt=True,
    )
    task = w3.pole.get_task(task_id)
    encrypted = decode_encrypted_training_set(w3.pole.get_blob(task.dataset_digest))
    with pytest.raises(Web3RPCError) as withheld:  # the features travel only as ciphertexts
        w3.pole.get_blob(encrypted.clear_digest)
    assert error_code(withheld.value) == RESOURCE_NOT_FOUND

    best = w3.pole.best_task()
    assert best is not None and best.task_id == task_id
    wait_until(lambda: w3.eth.block_number > best.anchor.number, timeout=TIMEOUT_S,
               what="an idle block on the anchor")
    said: list[str] = []
    outcome = release(w3, POSTER, task_id, workdir, wait_for=2, timeout_s=TIMEOUT_S, poll_s=0.2,
                      progress=said.append)
    assert len(outcome.admitted) == 2
    for account in MINERS:  # the release loop served both key requests
        assert f"task {task_id}: keys served to {account.address} for anchor {best.anchor.number}" in said

    deadline = time.monotonic() + TIMEOUT_S
    for miner in miners:
        miner.process.wait(timeout=max(1, deadline - time.monotonic()))
        assert miner.process.returncode == 0, f"{miner.name} did not seal:\n{miner.log_tail()}"
    # Revealed with the release (consensus verifies on it): the set the container commits to.
    encrypted.check_clear(decode_dataset(w3.pole.get_blob(encrypted.clear_digest)))

    test_set = load_test_set(workdir, task_id)
    scores = {}
    for announcement in outcome.admitted:
        admitted = decode_model(w3.pole.get_model(announcement.model_commitment))
        sml = model_sml(outcome.anchor_hash, announcement.miner, admitted.spec.input_shape, test_set.d)
        assert isinstance(sml, LocalSML) == (model == "cnn")
        scores[announcement.miner] = evaluate_integer_model(admitted, sml, test_set)
    settled = wait_until(lambda: _settled(w3, task_id), timeout=TIMEOUT_S, what="the task settled")
    result = settled.result
    assert result.test_bps == max(scores.values())
    assert scores[result.winner] == result.test_bps
    assert to_canonical_address(w3.eth.get_block(result.block_number)["miner"]) == result.winner
    for account in MINERS:
        paid = w3.eth.get_balance(account.address) - before[account.address]
        assert paid == (REWARD if to_canonical_address(account.address) == result.winner else 0)
    assert w3.eth.get_balance(registry.address) == len(MINERS) * MINER_BOND

    # The data node gets its model: the input contract comes from the clear set the
    # encrypted container commits to, and the claimed test accuracy is re-checked.
    delivery = fetch_model(w3, task_id, tmp_path / "model")
    assert delivery.warning is None
    assert delivery.meta["test_bps"] == result.test_bps


def _settled(w3, task_id: int):
    task = w3.pole.get_task(task_id)
    assert task.status is not TaskStatus.EXPIRED, f"task {task_id} expired"
    return task if task.status is TaskStatus.SETTLED else None
