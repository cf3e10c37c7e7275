"""An encrypted task posted from the page: the form's checkbox reaches post_task(encrypt=True),
the task list says which tasks are encrypted, and the training blob miners fetch over RPC is
an IPFE-encrypted container committing to the data node's clear training set. A non-boolean
`encrypted`, or an encrypted task without the automatic release (whose loop serves the
miners' key requests), gets a clear message and posts nothing."""
from __future__ import annotations

from pathlib import Path

import pytest

from miner.datasets import decode_dataset, load_builtin
from miner.encrypted_tasks import EncryptedTrainingSet, decode_training_blob
from miner.pole_module import attach_pole
from pole_chain.clients.data_node import task_dir
from pole_chain.clients.key_service import CLEAR_TRAIN_FILE
from tests.dashboard.conftest import dashboard_url, fill_task_form
from tests.dashboard.test_forms import chain_state, post_and_read
from tests.dashboard.test_http import post
from vm_hooks.genesis import dev_accounts

POSTER = dev_accounts()[0]
IRIS = {"dataset": "iris", "model": "logreg", "accuracy": "0.5", "solutions": "1"}


@pytest.fixture(scope="module")
def node(devnode):
    return devnode


def test_bad_encrypted_input_posts_nothing(node, open_page):
    w3 = attach_pole(node.web3())
    before = chain_state(w3)
    form = {"account": 0, "reward": "1", "accuracy": "0.5", "timeLimit": "120", "solutions": "1",
            "model": "logreg", "dataset": "iris"}
    for value in ("yes", 1, None, [True]):
        status, answer = post(node.url + "/dashboard/api/post-task", dict(form, encrypted=value))
        assert status == 400, answer
        assert answer["error"] == f"encrypted must be true or false, got {value!r}"
    status, answer = post(node.url + "/dashboard/api/post-task", dict(form, autoRelease="false"))
    assert status == 400 and answer["error"] == "automatic release must be true or false, got 'false'"

    page = open_page(dashboard_url(node))
    fill_task_form(page, **IRIS, auto_release=False, encrypted=True)
    assert post_and_read(page) == (
        "Not posted: an encrypted task needs the automatic release: it serves the miners' key "
        "requests while it waits for their solutions"
    )
    assert chain_state(w3) == before and w3.pole.tasks() == []


def test_an_encrypted_task_from_the_page_is_encrypted_for_miners(node, open_page, screenshot):
    w3 = attach_pole(node.web3())
    page = open_page(dashboard_url(node))
    fill_task_form(page, **IRIS, encrypted=True)
    assert post_and_read(page) == f"Task 1 posted from {POSTER.address}."
    fill_task_form(page, **IRIS, encrypted=False)
    assert post_and_read(page) == f"Task 2 posted from {POSTER.address}."

    page.wait_for_selector("#task-table tr[data-task='1'] td.data .pill.encrypted")
    page.wait_for_selector("#task-table tr[data-task='2'] td.data >> text=clear")
    assert page.text_content("#task-table tr[data-task='1'] td.data") == "encrypted"
    assert "posted encrypted task 1 from" in page.text_content("#data-log")
    screenshot(page, "data-node-encrypted")

    # what a miner fetches by the task's dataset digest: an encrypted container, no features
    task = w3.pole.get_task(1)
    container = decode_training_blob(w3.pole.get_blob(task.dataset_digest))
    assert isinstance(container, EncryptedTrainingSet)
    iris = load_builtin("iris")
    assert container.d == iris.d and container.num_classes == iris.num_classes
    assert container.ciphertexts().N == container.n  # every point decodes
    # ... committing to the clear training set only the data node (the dashboard) holds
    workdir = Path(node.datadir) / "dashboard"
    clear = decode_dataset((task_dir(workdir, 1) / CLEAR_TRAIN_FILE).read_bytes())
    container.check_clear(clear)
    assert not isinstance(decode_training_blob(w3.pole.get_blob(w3.pole.get_task(2).dataset_digest)),
                          EncryptedTrainingSet)
