"""Fixtures shared by the integration suites: a real `pole node --dev` process per module."""
from __future__ import annotations

import pytest

from miner.node_client import PoLeClient
from pole_chain.devnet.node_process import NodeProcess


@pytest.fixture(scope="module")
def devnode(tmp_path_factory):
    """One dev node process for the test module (real HTTP, real chain database)."""
    process = NodeProcess(tmp_path_factory.mktemp("devnode"), dev=True).start()
    yield process
    process.stop()


@pytest.fixture
def snapshot_client(devnode):
    """A client of `devnode`; the chain is reverted to its snapshot after the test."""
    client = PoLeClient(devnode.web3())
    snapshot = client.call("evm_snapshot")
    yield client
    assert client.call("evm_revert", snapshot) is True
