"""eth_syncing: false unless a sync runs, then geth's three fields (no processes needed)."""
from __future__ import annotations

from types import SimpleNamespace

from pole_chain.node.sync import SyncProgress
from pole_chain.rpc.eth_api import eth_syncing


def context(progress: SyncProgress | None, on_network: bool = True) -> SimpleNamespace:
    sync = SimpleNamespace(progress=lambda: progress)
    network = SimpleNamespace(sync=sync) if on_network else None
    return SimpleNamespace(node=SimpleNamespace(network=network))


def test_eth_syncing_is_false_off_the_network_and_when_not_syncing():
    assert eth_syncing(context(None, on_network=False)) is False
    assert eth_syncing(context(None)) is False


def test_eth_syncing_reports_geths_fields_while_a_sync_runs():
    answer = eth_syncing(context(SyncProgress(3, 40, 250)))
    assert answer == {"startingBlock": "0x3", "currentBlock": "0x28", "highestBlock": "0xfa"}
