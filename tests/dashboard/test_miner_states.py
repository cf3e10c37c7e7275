"""The miner view follows one task through every state, live, while a real miner works it.

The data node releases by hand here (automatic release off), so the miner stays announced
until the page's Release button is clicked: the miner view, polled by the page, must show
training, then announced, then (after the release) released, revealed and won, in that
order, with every step in its action log and the state track.
"""
from __future__ import annotations

import time

from miner.pole_module import attach_pole
from tests.dashboard.conftest import dashboard_url, fill_task_form, start_miners
from vm_hooks.genesis import dev_accounts

ACCOUNTS = dev_accounts()
MINER = ACCOUNTS[3]
ORDER = ["waiting", "training", "announced", "released", "revealed", "won"]
TIMEOUT_S = 300


def watch_state(page, seen: list[str]) -> str:
    state = page.text_content("#miner-state")
    if state and (not seen or seen[-1] != state):
        seen.append(state)
    return state


def test_the_miner_view_follows_one_task_through_every_state(dev_node, children, open_page, screenshot):
    w3 = attach_pole(dev_node.web3())
    miner_page = open_page(dashboard_url(dev_node, "miner"))
    miner_page.fill("#miner-address", MINER.address)
    miner_page.dispatch_event("#miner-address", "change")
    (miner,) = start_miners(children, dev_node.url, [MINER], w3)
    miner_page.wait_for_selector("#miner-bond >> text=(bonded)", timeout=30_000)
    seen: list[str] = []
    assert watch_state(miner_page, seen) == "waiting"

    data_page = open_page(dashboard_url(dev_node, "data"))
    fill_task_form(data_page, account=0, accuracy="0.9", time_limit="300", solutions="1",
                   auto_release=False)
    data_page.click("#post-button")
    data_page.wait_for_selector("#post-message.ok", timeout=120_000)

    deadline = time.monotonic() + TIMEOUT_S
    while watch_state(miner_page, seen) != "announced":
        assert time.monotonic() < deadline, f"never announced; states seen {seen}\n{miner.log_tail()}"
        miner_page.wait_for_timeout(100)
    assert "training" in seen, f"the page never showed the miner training: {seen}"
    screenshot(miner_page, "miner-announced")
    miner_page.wait_for_timeout(2500)
    assert watch_state(miner_page, seen) == "announced"  # nothing happens without the release

    release = data_page.locator("#task-table tr[data-task='1'] button.release")
    release.wait_for(timeout=30_000)
    release.click()
    while watch_state(miner_page, seen) != "won":
        assert time.monotonic() < deadline, f"never won; states seen {seen}\n{miner.log_tail()}"
        miner_page.wait_for_timeout(100)

    # live: every state shown came in the protocol's order, none skipped before the release
    assert seen == [s for s in ORDER if s in seen], seen
    assert seen[:3] == ["waiting", "training", "announced"], seen
    # the track and the action log hold every step, the ones faster than a poll included
    track = miner_page.locator("#miner-track li")
    assert track.all_text_contents() == ["training", "announced", "released", "revealed", "won"]
    assert miner_page.locator("#miner-track li.current").text_content() == "won"
    log = miner_page.locator("#miner-log li").all_text_contents()[::-1]  # oldest first
    expected = ["is the best open task since block", "announced model", "released the test set",
                "model revealed", "won block"]
    positions = [next(i for i, line in enumerate(log) if text in line) for text in expected]
    assert positions == sorted(positions), log
    assert "this model is admitted" in " ".join(log)
    result = w3.pole.get_task(1).result
    assert miner_page.text_content("#miner-test") == f"{result.test_bps / 100:.2f} %"
    assert miner_page.text_content("#miner-rewards") == "1 ETH"
    miner.process.wait(timeout=60)
    assert miner.process.returncode == 0, miner.log_tail()
