"""The `w3.pole` web3.py module (miner/pole_module.py) against a real `pole node --dev`.

Every pole_* method the node serves has a `w3.pole` method; each is called here with Python
values and must answer with Python values (ints, bytes, the `Task` records of
vm_hooks/task.py) equal to what the node's JSON-RPC answer says on the wire. Errors are
web3's own `Web3RPCError`, with the node's message and code readable.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
from eth_utils import decode_hex, encode_hex, keccak, to_canonical_address, to_int
from web3 import Web3
from web3.exceptions import Web3RPCError

from contracts import TASK_REGISTRY, load_artifact
from miner.messages import SolutionAnnouncement, commitment_for
from miner.pole_module import PoLe, attach_pole, error_code, error_message, pole_web3, task_from_rpc
from pole_chain.rpc.pole_api import METHODS, SEAL_REJECTED, format_task
from tests.conftest import dev_call
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID, REGISTRY_ADDRESS
from vm_hooks.task import Task, TaskAnchor, TaskResult, TaskStatus

ACCOUNTS = dev_accounts()
POSTER, MINER = ACCOUNTS[1], ACCOUNTS[2]
NOT_FOUND = -32001  # pole_chain/rpc/dispatch.py: RESOURCE_NOT_FOUND


@pytest.fixture
def w3(snapshot_w3):
    return snapshot_w3


def post_task(w3: Web3, *, reward: int = 10**18, time_limit: int = 600) -> int:
    """A task straight through the registry contract (dev accounts are unlocked)."""
    registry = w3.eth.contract(
        address=Web3.to_checksum_address(REGISTRY_ADDRESS), abi=load_artifact(TASK_REGISTRY).abi
    )
    tx_hash = registry.functions.post_task(
        keccak(b"spec"), keccak(b"training set"), keccak(b"test set"), 9000, time_limit, 2
    ).transact({"from": POSTER.address, "value": reward})
    assert w3.eth.get_transaction_receipt(tx_hash).status == 1
    return registry.functions.task_count().call()


def pole_methods_of_the_module() -> set[str]:
    return {
        method.json_rpc_method for method in vars(PoLe).values()
        if hasattr(method, "json_rpc_method")
    }


def test_every_pole_method_of_the_node_has_a_module_method():
    served = {name for name in METHODS.methods if name.startswith("pole_")}
    assert pole_methods_of_the_module() == served


def test_attach_is_idempotent_and_pole_web3_connects(devnode):
    w3 = devnode.web3()
    assert attach_pole(w3) is w3 and isinstance(w3.pole, PoLe)
    module = w3.pole
    assert attach_pole(w3).pole is module  # attached once
    status = pole_web3(devnode.url).pole.node_status()
    assert status["chainId"] == CHAIN_ID and status["dev"] is True
    assert isinstance(status["headNumber"], int) and isinstance(status["headTimestamp"], int)
    head = w3.eth.get_block("latest")
    assert status["headHash"] == bytes(head["hash"]) and status["headNumber"] == head["number"]


def test_tasks_are_task_records_equal_to_the_wire_objects(w3):
    assert w3.pole.best_task() is None and w3.pole.tasks() == []
    first = post_task(w3, reward=10**18)
    second = post_task(w3, reward=3 * 10**18)  # the better value per second: the best task
    best = w3.pole.best_task()
    assert isinstance(best, Task) and best.task_id == second
    head = w3.eth.get_block("latest")  # second became best after the block that posted it
    assert best.anchor == TaskAnchor(head["number"], bytes(head["hash"]))
    assert replace(best, anchor=None) == w3.pole.get_task(second)  # only the best has one
    assert [task.task_id for task in w3.pole.tasks()] == [first, second]
    assert w3.pole.tasks()[1] == w3.pole.get_task(second)

    wire = dev_call(w3, "pole_task", hex(second))
    assert best.status is TaskStatus.OPEN and wire["status"] == "open" and best.result is None
    assert best.poster == to_canonical_address(POSTER.address) == to_canonical_address(wire["poster"])
    assert best.reward == 3 * 10**18 == to_int(hexstr=wire["reward"])
    assert best.test_set_commitment == keccak(b"test set") == decode_hex(wire["testSetCommitment"])
    assert (best.min_train_bps, best.time_limit, best.solutions_wanted) == (9000, 600, 2)
    assert best.deadline == best.posted_at + 600 == to_int(hexstr=wire["deadline"])
    assert format_task(replace(best, anchor=None)) == wire  # the node's own formatter
    assert dev_call(w3, "pole_bestTask")["anchor"] == {
        "number": hex(head["number"]), "hash": encode_hex(head["hash"]),
    }


def test_unknown_task_is_web3s_rpc_error_with_the_nodes_words(w3):
    with pytest.raises(Web3RPCError) as missing:
        w3.pole.get_task(42)
    assert error_code(missing.value) == NOT_FOUND
    assert error_message(missing.value).startswith("no task 42")


def test_a_settled_task_round_trips_through_the_wire_format():
    """format_task (the node) and task_from_rpc (the module) are inverse on a settled task."""
    settled = Task(
        task_id=7, poster=b"\x01" * 20, reward=5, model_spec=keccak(b"m"),
        dataset_digest=keccak(b"d"), test_set_commitment=keccak(b"t"), min_train_bps=9000,
        time_limit=60, solutions_wanted=3, posted_at=100, deadline=160,
        status=TaskStatus.SETTLED,
        result=TaskResult(
            winner=b"\x02" * 20, model_commitment=keccak(b"model"), train_bps=9300,
            test_bps=9100, release_digest=keccak(b"release")[:24] + bytes(8), block_number=12,
        ),
    )
    wire = format_task(settled)
    assert wire["status"] == "settled" and wire["result"]["testBps"] == hex(9100)
    again = task_from_rpc(wire)
    assert again == settled and again.status is TaskStatus.SETTLED
    assert again.result.release_digest_prefix == keccak(b"release")[:24]


def test_blobs_in_and_out_as_bytes(w3):
    blob = b"a blob for the module test"
    assert w3.pole.put_blob(blob) == keccak(blob)
    assert w3.pole.get_blob(keccak(blob)) == blob
    with pytest.raises(Web3RPCError) as missing:
        w3.pole.get_blob(keccak(b"never stored"))
    assert error_code(missing.value) == NOT_FOUND
    assert encode_hex(keccak(b"never stored")) in error_message(missing.value)


def test_announce_release_reveal_and_seal(w3):
    task_id = post_task(w3)
    parent = bytes(w3.eth.get_block("latest")["hash"])
    miner = to_canonical_address(MINER.address)
    model = b"model blob bytes"
    commitment = w3.pole.reveal_model(model, miner, parent)
    assert commitment == commitment_for(model, miner, parent)
    assert w3.pole.get_model(commitment) == model
    assert w3.pole.get_model(keccak(b"no such model")) is None

    announcement = SolutionAnnouncement.sign(
        chain_id=CHAIN_ID, task_id=task_id, anchor_hash=parent, model_commitment=commitment,
        train_bps=9500, private_key=MINER.key,
    )
    assert w3.pole.announce(announcement.encode()) is True
    assert w3.pole.announce(announcement.encode()) is False  # not new
    assert w3.pole.announcements(task_id, parent) == [announcement.encode()]
    assert w3.pole.get_release(task_id, parent) is None
    with pytest.raises(Web3RPCError) as malformed:
        w3.pole.release(b"\x02not a release")
    assert "malformed Release" in error_message(malformed.value)

    # No release admits the commitment: the node refuses the seal and names the rule.
    with pytest.raises(Web3RPCError) as refused:
        w3.pole.build_block(
            parent_hash=parent, coinbase=miner, task_id=task_id, commitment=commitment,
            train_bps=9500, test_bps=9000, release_digest=keccak(b"no release"),
        )
    assert error_code(refused.value) == SEAL_REJECTED
    assert error_message(refused.value).startswith("PoLe block refused: ")
    assert w3.eth.get_block("latest")["hash"] == parent  # nothing imported
    with pytest.raises(Web3RPCError) as not_rlp:
        w3.pole.submit_block(b"\xc0")
    assert error_code(not_rlp.value) is not None and error_message(not_rlp.value)
