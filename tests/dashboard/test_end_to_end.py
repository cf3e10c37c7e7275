"""One task from the page to the delivered model, with real processes and a real browser.

    node      `pole node --dev` (automine), serving JSON-RPC and the dashboard on one port
    miners    two `pole mine --once` processes (each bonds on start)
    page      the data-node view posts the task (digits, mlp, 2 solutions, automatic release);
              the miners train, announce, the dashboard's data node releases, they reveal and
              seal; the page notifies the delivered model, checked against its commitment,
              and its state dict downloads; the miner view says won for one miner and lost
              for the other; the chain view shows the PoLe block with its winner
"""
from __future__ import annotations

import json

from safetensors.numpy import load as load_safetensors
from eth_utils import encode_hex

from miner.pole_module import attach_pole
from tests.dashboard.conftest import dashboard_url, fill_task_form, start_miners
from vm_hooks.genesis import dev_accounts
from vm_hooks.task import TaskStatus

ACCOUNTS = dev_accounts()
POSTER, MINERS = ACCOUNTS[0], ACCOUNTS[1:3]
SETTLE_TIMEOUT_MS = 300_000


def test_post_from_the_page_and_receive_the_model(dev_node, children, open_page, screenshot):
    w3 = attach_pole(dev_node.web3())
    miners = start_miners(children, dev_node.url, MINERS, w3)
    page = open_page(dashboard_url(dev_node))
    fill_task_form(page, account=0, dataset="digits", model="mlp", reward="1", accuracy="0.9",
                   time_limit="240", solutions="2", auto_release=True)
    page.click("#post-button")
    page.wait_for_selector("#post-message.ok", timeout=120_000)
    assert page.text_content("#post-message") == f"Task 1 posted from {POSTER.address}."
    page.wait_for_selector("#task-table tr[data-task='1']")

    # the miners announce; the automatic release admits both; a PoLe block settles the task
    page.wait_for_selector(".announcements[data-task='1'] tbody tr:nth-child(2)", timeout=SETTLE_TIMEOUT_MS)
    for miner in miners:
        miner.process.wait(timeout=SETTLE_TIMEOUT_MS / 1000)
        assert miner.process.returncode == 0, f"{miner.name} did not seal:\n{miner.log_tail()}"
    # both blocks are in: the winner is final. The first sealed may have settled the task for
    # a while before the better sibling took the head; the card follows the winner
    task = w3.pole.get_task(1)
    assert task.status is TaskStatus.SETTLED
    result = task.result
    winner_card = f".notification.delivered[data-task='1'][data-winner='1:{encode_hex(result.model_commitment)}']"
    page.wait_for_selector(winner_card, timeout=SETTLE_TIMEOUT_MS)
    card = page.locator(".notification[data-task='1']")
    accuracies = card.locator(".accuracies").text_content()
    assert w3.to_checksum_address(result.winner) in accuracies
    assert f"test accuracy {result.test_bps / 100:.2f} %" in accuracies
    assert f"training accuracy {result.train_bps / 100:.2f} %" in accuracies
    assert "✓ the model hashes to it" in card.locator(".commitment").text_content()
    assert card.locator(".checked").text_content() == (
        f"test accuracy re-checked on the released test set: {result.test_bps / 100:.2f} %"
    )
    log = page.text_content("#data-log")
    assert "released its test set" in log and "admits 2 solution(s)" in log
    assert "task 1: model delivered and checked" in log
    screenshot(page, "data-node")

    # download: the state dict (safetensors) and meta.json naming the on-chain commitment
    with page.expect_download() as download:
        card.locator("a.download[data-file='model.safetensors']").click()
    assert download.value.suggested_filename == "model.safetensors"
    tensors = load_safetensors(open(download.value.path(), "rb").read())
    assert tensors and all(array.size for array in tensors.values())
    with page.expect_download() as download:
        card.locator("a.download[data-file='meta.json']").click()
    meta = json.loads(open(download.value.path()).read())
    assert meta["model_commitment"] == encode_hex(result.model_commitment)
    assert meta["test_accuracy_checked"] is True and meta["checked_test_bps"] == result.test_bps

    # the miner view: one won (and earned the reward), the other lost
    winner = w3.to_checksum_address(result.winner)
    loser = next(a.address for a in MINERS if a.address != winner)
    miner_page = open_page(dashboard_url(dev_node, "miner"))
    for address, state in ((winner, "won"), (loser, "lost")):
        miner_page.fill("#miner-address", address)
        miner_page.dispatch_event("#miner-address", "change")
        miner_page.wait_for_selector(f"#miner-state.{state}", timeout=30_000)
        if state == "won":
            miner_page.wait_for_function(
                "document.getElementById('miner-rewards').textContent === '1 ETH'")
            assert f"#{result.block_number}" in miner_page.text_content("#miner-blocks")
            screenshot(miner_page, "miner")
        else:
            assert miner_page.text_content("#miner-rewards") == "0 ETH"
            assert "lost to" in miner_page.text_content("#miner-log")

    # the chain view: the PoLe block, its winner and accuracies; the plots drew it
    chain_page = open_page(dashboard_url(dev_node, "chain"))
    row = chain_page.locator(f"#block-table tr[data-block='{result.block_number}']")
    row.wait_for(timeout=30_000)
    assert row.get_attribute("data-kind") == "PoLe"
    cells = row.locator("td").all_text_contents()
    assert cells[3] == f"{winner[:8]}…{winner[-4:]}"
    assert cells[4] == "1" and cells[6] == f"{result.test_bps / 100:.2f} %"
    assert chain_page.locator("#accuracy-plot circle[data-series='task 1']").count() == 1
    assert chain_page.locator("#interval-plot circle[data-series='PoLe']").count() == 1
    assert chain_page.text_content("#peer-list").startswith("no peers")
    screenshot(chain_page, "chain-dev")
