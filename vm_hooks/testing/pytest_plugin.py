"""pytest fixtures for contract suites on the PoLe VM: pole_backend, pole_tester, pole_w3.

Installed as the ``pole`` pytest plugin (``[project.entry-points.pytest11]``), so any test
in an environment with pole-chain installed can ask for them::

    def test_deploy(pole_w3):
        assert pole_w3.eth.chain_id == 0x504F4C45

Each fixture is function-scoped: every test starts from a fresh PoLe dev genesis. The chain
stack is imported only when a fixture is first used, so loading the plugin costs nothing
for suites that never ask for it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from web3 import Web3

    from vm_hooks.testing.tester import PoLeEthereumTester, PoLeEVMBackend


@pytest.fixture
def pole_backend() -> "PoLeEVMBackend":
    """eth-tester backend on a fresh in-memory PoLe dev chain."""
    from vm_hooks.testing.tester import PoLeEVMBackend

    return PoLeEVMBackend()


@pytest.fixture
def pole_tester(pole_backend: "PoLeEVMBackend") -> "PoLeEthereumTester":
    """EthereumTester on ``pole_backend`` (auto-mining: one block per transaction)."""
    from vm_hooks.testing.tester import PoLeEthereumTester

    return PoLeEthereumTester(pole_backend)


@pytest.fixture
def pole_w3(pole_tester: "PoLeEthereumTester") -> "Web3":
    """Web3 on ``pole_tester`` through ``PoLeTesterProvider``; accounts are the devnet's."""
    from vm_hooks.testing.tester import pole_tester_web3

    return pole_tester_web3(pole_tester)
