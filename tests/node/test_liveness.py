"""Liveness (issue #7): an open task nobody solves does not stop transactions.

A real non-dev node process mines idle blocks; a task is posted and stays open, unsolved;
plain transfers still confirm within a few idle intervals, and the task keeps its anchor
(docs/PROTOCOL.md, "Task anchor")."""
from __future__ import annotations

from eth_utils import keccak, to_checksum_address

from contracts import TASK_REGISTRY, load_artifact
from miner.pole_module import attach_pole
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID, REGISTRY_ADDRESS
from vm_hooks.task import TaskStatus

from . import NodeProcess

POSTER, SENDER, RECEIVER = dev_accounts()[0], dev_accounts()[1], dev_accounts()[2]
FEES = {"maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9}


def post_task(w3) -> None:
    registry = w3.eth.contract(
        address=to_checksum_address(REGISTRY_ADDRESS), abi=load_artifact(TASK_REGISTRY).abi
    )
    tx = registry.functions.post_task(
        keccak(b"spec"), keccak(b"train"), keccak(b"test"), 9_000, 3_600, 1
    ).build_transaction({
        "from": POSTER.address, "value": 10**18, "chainId": CHAIN_ID, "nonce": 0,
        "gas": 500_000, **FEES,
    })
    tx_hash = w3.eth.send_raw_transaction(POSTER.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.1).status == 1


def test_transfers_confirm_while_an_unsolved_task_is_open():
    node = NodeProcess(None, "--mine-idle", dev=False).start()
    try:
        w3 = attach_pole(node.web3())
        post_task(w3)
        task = w3.pole.best_task()
        assert task is not None and task.status is TaskStatus.OPEN and task.anchor is not None
        for nonce in range(2):
            tx_hash = w3.eth.send_raw_transaction(SENDER.sign_transaction({
                "chainId": CHAIN_ID, "nonce": nonce, "to": RECEIVER.address, "value": 7,
                "gas": 21_000, **FEES,
            }).raw_transaction)
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.1)
            assert receipt.status == 1
            assert w3.eth.get_block(receipt.blockNumber).difficulty == 1  # an idle block
        still = w3.pole.best_task()
        assert (still.task_id, still.anchor) == (task.task_id, task.anchor)  # same anchor
        assert still.status is TaskStatus.OPEN
    finally:
        node.stop()
