"""Fixtures shared by the integration suites: a real `pole node --dev` process per module."""
from __future__ import annotations

import pytest
from web3 import Web3
from web3.types import RPCEndpoint

from miner.pole_module import attach_pole
from pole_chain.devnet.node_process import NodeProcess


@pytest.fixture(scope="module")
def devnode(tmp_path_factory):
    """One dev node process for the test module (real HTTP, real chain database)."""
    process = NodeProcess(tmp_path_factory.mktemp("devnode"), dev=True).start()
    yield process
    process.stop()


def dev_call(w3: Web3, method: str, *params: object) -> object:
    """A dev method (evm_mine, evm_snapshot, ...) through web3's request manager."""
    return w3.manager.request_blocking(RPCEndpoint(method), list(params))


@pytest.fixture
def snapshot_w3(devnode):
    """A Web3 with `w3.pole` on `devnode`; the chain is reverted to its snapshot after the test."""
    w3 = attach_pole(devnode.web3())
    snapshot = dev_call(w3, "evm_snapshot")
    yield w3
    assert dev_call(w3, "evm_revert", snapshot) is True
