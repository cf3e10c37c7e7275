"""The dashboard of a full node (`pole node --mine-idle`, no dev accounts): idle blocks while
a miner trains, a task posted and released by a data node with its own key (the CLI's
Python logic, as `pole task post` runs it), the chain view's intervals of PoLe against idle
blocks, and a model fetched from the page by anyone (delivery needs no key)."""
from __future__ import annotations

import threading

from miner.pole_module import attach_pole
from pole_chain.clients.data_node import post_task, release
from pole_chain.devnet.node_process import NodeProcess
from tests.dashboard.conftest import dashboard_url, start_miners
from vm_hooks.genesis import dev_accounts

ACCOUNTS = dev_accounts()
POSTER, MINER = ACCOUNTS[4], ACCOUNTS[5]
TIMEOUT_MS = 300_000


def test_a_full_node_shows_pole_and_idle_blocks_and_delivers(tmp_path, children, open_page, screenshot):
    with NodeProcess(tmp_path / "chain", "--mine-idle", dev=False) as node:
        w3 = attach_pole(node.web3())
        (miner,) = start_miners(children, node.url, [MINER], w3)
        task_id = post_task(w3, POSTER, dataset="digits", model="mlp", reward_wei=2 * 10**18,
                            min_train_bps=9000, time_limit_s=240, solutions_wanted=1,
                            workdir=tmp_path / "data-node")
        releasing = threading.Thread(
            target=release, args=(w3, POSTER, task_id, tmp_path / "data-node"),
            kwargs={"wait_for": 1, "timeout_s": 200, "poll_s": 0.3}, daemon=True)
        releasing.start()

        chain_page = open_page(dashboard_url(node, "chain"))
        assert chain_page.text_content("#node-mode") == "full, mining idle blocks"
        chain_page.wait_for_selector("#block-table tr[data-kind='PoLe']", timeout=TIMEOUT_MS)
        releasing.join(timeout=60)
        chain_page.wait_for_selector("#interval-plot circle[data-series='PoLe']", timeout=30_000)
        assert chain_page.locator("#interval-plot circle[data-series='idle']").count() >= 2
        legend = chain_page.text_content("#interval-plot")
        assert "PoLe (mean" in legend and "idle (mean" in legend
        assert chain_page.locator("#block-table tr[data-kind='idle']").count() >= 2
        screenshot(chain_page, "chain")

        data_page = open_page(dashboard_url(node, "data"))
        fetch = data_page.locator(f"#task-table tr[data-task='{task_id}'] button.fetch")
        fetch.wait_for(timeout=30_000)
        fetch.click()
        card = data_page.locator(f".notification.delivered[data-task='{task_id}']")
        card.wait_for(timeout=TIMEOUT_MS)
        result = w3.pole.get_task(task_id).result
        assert f"test accuracy {result.test_bps / 100:.2f} %" in card.text_content()
        assert data_page.locator(f".notification[data-task='{task_id}'] a.download").count() == 4
        miner.process.wait(timeout=60)
        assert miner.process.returncode == 0, miner.log_tail()
