"""Background block production: dev interval mining and proof-of-work idle blocks."""
from __future__ import annotations

import time

from vm_hooks.params import CHAIN_ID
from vm_hooks.genesis import dev_accounts

from . import NodeProcess

ACCOUNTS = dev_accounts()


def wait_for_block(w3, number: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while w3.eth.block_number < number:
        assert time.monotonic() < deadline, f"no block #{number} within {timeout}s"
        time.sleep(0.1)


def signed_transfer(nonce: int) -> bytes:
    return ACCOUNTS[0].sign_transaction({
        "chainId": CHAIN_ID, "nonce": nonce, "to": ACCOUNTS[1].address, "value": 5,
        "gas": 21_000, "maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9,
    }).raw_transaction


def test_dev_block_time_seals_on_a_schedule():
    node = NodeProcess(None, "--block-time", "0.3").start()
    try:
        w3 = node.web3()
        assert "block every 0.3s" in node.banner[-1]
        wait_for_block(w3, 2)  # empty blocks keep coming
        tx_hash = w3.eth.send_raw_transaction(signed_transfer(0))
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10, poll_latency=0.1)
        assert receipt.status == 1
    finally:
        node.stop()


def test_full_node_mines_idle_blocks_and_includes_transactions():
    node = NodeProcess(None, "--mine-idle", dev=False).start()
    try:
        w3 = node.web3()
        assert w3.eth.accounts == []
        wait_for_block(w3, 1)
        header = w3.eth.get_block("latest")
        assert header.number >= 1 and header.difficulty == 1  # an idle (PoW) block
        tx_hash = w3.eth.send_raw_transaction(signed_transfer(0))
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.1)
        assert receipt.status == 1
        assert node.result("eth_mining") is True
    finally:
        node.stop()
