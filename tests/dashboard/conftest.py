"""Browser fixtures for the dashboard: Debian's Chromium driven by Playwright, never a download.

The browser is the system's /usr/bin/chromium (`make browser` installs it: apt-get install
-y chromium), launched headless by PyPI's playwright (a test extra). These tests never skip:
a missing browser or driver fails them with the install step to run.

Screenshots: every view a test reaches is saved under the test's tmp_path; with
POLE_DASHBOARD_SCREENSHOTS=DIR (e.g. docs/screenshots) they are written there instead.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import pytest
from eth_utils import encode_hex

from miner.bonds import is_bonded
from pole_chain.demo.demo import Children, pole_command
from pole_chain.devnet.node_process import NodeProcess

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_STEP = (
    "run `make browser` (as root: apt-get update && apt-get install -y chromium) and "
    "`make install` (pip install playwright==1.65.2, a test extra)"
)
#: Chromium switches for a closed network: no first-run, update, sync or QUIC traffic.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS_VARIABLE = "POLE_DASHBOARD_SCREENSHOTS"
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session (the system's; nothing is downloaded)."""
    if not CHROMIUM.exists():
        pytest.fail(f"the dashboard tests need Chromium at {CHROMIUM}: {INSTALL_STEP}", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the dashboard tests need Playwright's Python API: {INSTALL_STEP}", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def open_page(chromium):
    """open_page(url) -> a Playwright page on the dashboard, loaded and polling; JavaScript
    errors on any page fail the test."""
    contexts, errors = [], []

    def open_(url: str):
        context = chromium.new_context(viewport=VIEWPORT, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def screenshot(tmp_path) -> Callable[[object, str], Path]:
    """screenshot(page, name): the whole page as NAME.png (docs/screenshots with the variable)."""
    folder = Path(os.environ.get(SCREENSHOTS_VARIABLE) or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.wait_for_timeout(1500)  # a poll or two: the view is filled
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def dev_node(tmp_path):
    """A `pole node --dev` process of the test's own (automine), serving the dashboard."""
    process = NodeProcess(tmp_path / "chain", dev=True).start()
    yield process
    process.stop()


def dashboard_url(node: NodeProcess, view: str = "data") -> str:
    return f"{node.url}/dashboard/#{view}"


@pytest.fixture
def children(tmp_path):
    """Child processes (miners) of the test, stopped however it ends."""
    processes = Children(tmp_path)
    yield processes
    processes.stop_all()


def start_miners(children: Children, url: str, accounts, w3, timeout_s: float = 120.0) -> list:
    """`pole mine --once` per account, as a user starts one; returns once all are bonded."""
    miners = [
        children.start(
            f"miner{i}",
            pole_command("mine", "--rpc", url, "--key", encode_hex(account.key), "--seed",
                         str(i), "--once", "--no-progress", "--poll", "0.3"),
        )
        for i, account in enumerate(accounts)
    ]
    deadline = time.monotonic() + timeout_s
    while not all(is_bonded(w3, account.address) for account in accounts):
        for miner in miners:
            assert miner.alive(), f"{miner.name} exited:\n{miner.log_tail()}"
        assert time.monotonic() < deadline, "the miners did not bond on start"
        time.sleep(0.2)
    return miners


def fill_task_form(page, *, account: int = 0, model: str = "mlp", dataset: str = "digits",
                   reward: str = "1", accuracy: str = "0.9", time_limit: str = "120",
                   solutions: str = "1", auto_release: bool = True, encrypted: bool = False) -> None:
    page.select_option("#account", str(account))
    page.select_option("#model", model)
    page.select_option("#dataset", dataset)
    page.fill("#reward", reward)
    page.fill("#accuracy", accuracy)
    page.fill("#time-limit", time_limit)
    page.fill("#solutions", solutions)
    page.set_checked("#auto-release", auto_release)
    page.set_checked("#encrypted", encrypted)
