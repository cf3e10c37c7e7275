"""Bad input in the data-node form gets a clear message, and nothing is posted: no task
appears on chain and the registry's escrow does not move. A good form with an uploaded .csv
dataset and a custom architecture posts a task whose digests are the data node's own."""
from __future__ import annotations

import json

import numpy as np
import pytest
from eth_utils import keccak
from web3 import Web3

from miner.datasets import load_builtin
from miner.model_spec import model_spec_canonical_bytes, model_spec_from_json
from miner.pole_module import attach_pole
from miner.registry_client import registry_contract
from tests.dashboard.conftest import dashboard_url, fill_task_form
from vm_hooks.genesis import dev_accounts

ACCOUNTS = dev_accounts()
UNFUNDED = 9  # drained by the test before it tries to post from it


@pytest.fixture(scope="module")
def node(devnode):
    return devnode


def chain_state(w3: Web3) -> tuple[int, int]:
    """(number of tasks on chain, ether held by the registry)."""
    registry = registry_contract(w3)
    return len(w3.pole.tasks()), w3.eth.get_balance(registry.address)


def post_and_read(page) -> str:
    page.click("#post-button")
    page.wait_for_selector("#post-message.error, #post-message.ok", timeout=120_000)
    return page.text_content("#post-message")


def test_bad_input_gets_a_message_and_posts_nothing(node, open_page, screenshot):
    w3 = attach_pole(node.web3())
    before = chain_state(w3)
    page = open_page(dashboard_url(node))

    fill_task_form(page, reward="0")
    assert post_and_read(page) == "Not posted: reward must be a positive amount of ether, got 0"
    screenshot(page, "data-node-bad-input")

    fill_task_form(page, accuracy="1.5")
    assert post_and_read(page) == (
        "Not posted: training accuracy is a fraction between 0 and 1 (0.9 = 90 %), got 1.5"
    )

    fill_task_form(page, model="custom")
    page.fill("#model-json", '{"version": 1, "layers": [')
    message = post_and_read(page)
    assert message.startswith("Not posted: model spec: spec is not valid JSON"), message

    page.fill("#model-json", json.dumps({"version": 1, "input_shape": [64], "num_classes": 10,
                                         "layers": [{"type": "dense", "units": 10}]}))
    message = post_and_read(page)
    assert message == ("Not posted: model spec does not fit the dataset: model input has 64 "
                       "values, the SML of 64 features gives 128"), message

    fill_task_form(page, time_limit="0")
    assert "time limit must be 1.." in post_and_read(page)

    # an unfunded account: drain dev account 9 into account 8 (dev accounts are unlocked)
    drained = ACCOUNTS[UNFUNDED].address
    gas_price = w3.eth.gas_price
    w3.eth.send_transaction({"from": drained, "to": ACCOUNTS[8].address, "gas": 21000,
                             "gasPrice": gas_price,
                             "value": w3.eth.get_balance(drained) - 21000 * gas_price - 10**15})
    before = chain_state(w3)
    fill_task_form(page, account=UNFUNDED, reward="1")
    message = post_and_read(page)
    assert message.startswith(f"Not posted: {drained} holds 0.001 ETH; the reward is 1 ETH plus gas: "
                              "fund this key"), message
    screenshot(page, "data-node-unfunded")

    assert chain_state(w3) == before, "a refused form posted something"
    assert w3.pole.tasks() == []


def test_an_uploaded_csv_with_a_custom_architecture_is_posted(node, open_page, tmp_path):
    w3 = attach_pole(node.web3())
    iris = load_builtin("iris")
    rows = np.column_stack([iris.features, iris.labels]).astype(np.int64)
    csv = tmp_path / "iris.csv"
    np.savetxt(csv, rows, fmt="%d", delimiter=",")
    page = open_page(dashboard_url(node))
    fill_task_form(page, dataset="upload", model="custom", accuracy="0.5", solutions="1",
                   auto_release=False)
    page.set_input_files("#dataset-file", str(csv))
    page.select_option("#dataset", "iris")  # the template for this shape of data
    page.click("#model-template")
    page.wait_for_function("document.getElementById('model-json').value.includes('num_classes')")
    spec_text = page.input_value("#model-json")
    page.select_option("#dataset", "upload")
    message = post_and_read(page)
    assert message.startswith("Task 1 posted from 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"), message
    task = w3.pole.get_task(1)
    assert task.model_spec == keccak(model_spec_canonical_bytes(model_spec_from_json(spec_text)))
    assert w3.pole.get_blob(task.dataset_digest)  # the training set was uploaded
    page.wait_for_selector("#task-table tr[data-task='1'] .state >> text=open")
