"""web3.py's HTTPProvider against a real `pole node --dev` process: what a dev does daily."""
from __future__ import annotations

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import BlockNotFound, ContractLogicError, TransactionNotFound, Web3RPCError

from vm_hooks.params import CHAIN_ID
from vm_hooks.genesis import dev_accounts

from . import NodeProcess, compile_store_contract

ACCOUNTS = dev_accounts()
ETHER = 10**18


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = NodeProcess(tmp_path_factory.mktemp("web3-node")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def w3(node) -> Web3:
    return node.web3()


@pytest.fixture(scope="module")
def store(w3):
    """The Store contract deployed by account 0 (eth_sendTransaction, auto-filled)."""
    abi, bytecode = compile_store_contract()
    factory = w3.eth.contract(abi=abi, bytecode=bytecode)
    tx_hash = factory.constructor().transact({"from": w3.eth.accounts[0]})
    receipt = w3.eth.get_transaction_receipt(tx_hash)  # automine: already mined
    assert receipt.status == 1 and receipt.contractAddress
    return w3.eth.contract(address=receipt.contractAddress, abi=abi)


def test_identity_and_dev_accounts(node, w3):
    assert w3.eth.chain_id == CHAIN_ID
    assert w3.net.version == str(CHAIN_ID)
    assert w3.is_connected()
    assert w3.eth.accounts == [a.address for a in ACCOUNTS]
    for account in ACCOUNTS:
        assert w3.eth.get_balance(account.address, block_identifier=0) == 10_000 * ETHER
    assert w3.eth.syncing is False
    assert "pole" in w3.client_version
    # The banner lists every dev key, like anvil.
    assert any(bytes(ACCOUNTS[9].key).hex() in line for line in node.banner)


def test_send_raw_transaction_is_mined_before_it_returns(w3):
    sender, recipient = ACCOUNTS[1], Account.create().address
    tx = {
        "chainId": CHAIN_ID,
        "nonce": w3.eth.get_transaction_count(sender.address),
        "to": recipient,
        "value": 12345,
        "gas": 21_000,
        "maxFeePerGas": w3.eth.gas_price * 2,
        "maxPriorityFeePerGas": w3.eth.max_priority_fee,
    }
    tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.get_transaction_receipt(tx_hash)  # no waiting: automine
    assert receipt.status == 1
    assert receipt.gasUsed == 21_000
    assert receipt["from"] == sender.address and receipt.to == recipient
    assert w3.eth.get_balance(recipient) == 12345
    assert w3.eth.get_raw_transaction(tx_hash) == sender.sign_transaction(tx).raw_transaction
    mined = w3.eth.get_transaction(tx_hash)
    assert mined.blockNumber == receipt.blockNumber and mined.value == 12345
    block = w3.eth.get_block(receipt.blockNumber, full_transactions=True)
    assert block.transactions[0].hash == tx_hash
    assert w3.eth.get_transaction_by_block(receipt.blockNumber, 0).hash == tx_hash
    assert w3.eth.get_transaction_by_block(block.hash, 0).hash == tx_hash
    assert w3.eth.get_block_transaction_count(block.hash) == 1
    assert w3.eth.get_block(block.hash).number == receipt.blockNumber


def test_send_transaction_fills_nonce_gas_and_fees(w3):
    sender = w3.eth.accounts[2]
    before = w3.eth.get_transaction_count(sender)
    tx_hash = w3.eth.send_transaction({"from": sender, "to": w3.eth.accounts[3], "value": ETHER})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    assert receipt.status == 1
    assert w3.eth.get_transaction_count(sender) == before + 1
    assert w3.eth.get_transaction(tx_hash).type == 2


def test_unknown_account_cannot_send_unsigned(w3):
    with pytest.raises(Web3RPCError, match="unknown account"):
        w3.eth.send_transaction({"from": Account.create().address, "to": ACCOUNTS[0].address})


def test_deploy_call_and_transact(w3, store):
    assert store.functions.stored().call() == 0
    tx_hash = store.functions.store(42).transact({"from": w3.eth.accounts[0]})
    assert w3.eth.get_transaction_receipt(tx_hash).status == 1
    assert store.functions.stored().call() == 42
    assert w3.eth.get_code(store.address) != b""
    assert int.from_bytes(w3.eth.get_storage_at(store.address, 0), "big") == 42


def test_call_at_historical_blocks_and_with_state_override(w3, store):
    store.functions.store(5).transact({"from": w3.eth.accounts[0]})
    block = w3.eth.block_number
    store.functions.store(6).transact({"from": w3.eth.accounts[0]})
    assert store.functions.stored().call(block_identifier=block) == 5
    assert store.functions.stored().call(block_identifier=w3.eth.get_block(block).hash) == 5
    assert store.functions.stored().call(block_identifier="latest") == 6
    override = {store.address: {"stateDiff": {"0x" + "00" * 32: "0x" + "00" * 31 + "63"}}}
    assert store.functions.stored().call(state_override=override) == 99
    assert store.functions.stored().call() == 6  # the override changed nothing


def test_revert_reason_raises_contract_logic_error(w3, store):
    with pytest.raises(ContractLogicError, match="unlucky number"):
        store.functions.store(13).call()
    with pytest.raises(ContractLogicError, match="unlucky number"):
        store.functions.store(13).estimate_gas()
    with pytest.raises(ContractLogicError, match="unlucky number"):
        store.functions.store(13).transact({"from": w3.eth.accounts[0]})


def test_a_reverting_transaction_with_explicit_gas_is_mined_as_failed(w3, store):
    tx_hash = store.functions.store(13).transact({"from": w3.eth.accounts[0], "gas": 100_000})
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt.status == 0 and receipt.logs == []


def test_estimate_gas_is_enough_and_tight(w3, store):
    estimate = store.functions.store(7).estimate_gas({"from": w3.eth.accounts[4]})
    receipt = w3.eth.get_transaction_receipt(
        store.functions.store(7).transact({"from": w3.eth.accounts[4], "gas": estimate})
    )
    assert receipt.status == 1
    assert receipt.gasUsed <= estimate <= receipt.gasUsed * 1.1 + 3000
    assert w3.eth.estimate_gas({"from": w3.eth.accounts[4], "to": ACCOUNTS[5].address}) == 21_000


def test_events_with_get_logs_and_filters(w3, store):
    alice, bob = w3.eth.accounts[5], w3.eth.accounts[6]
    start = w3.eth.block_number + 1
    log_filter = store.events.Stored.create_filter(from_block=start)
    block_filter = w3.eth.filter("latest")
    store.functions.store(100).transact({"from": alice})
    store.functions.store(200).transact({"from": bob})

    logs = store.events.Stored.get_logs(from_block=start)
    assert [(e.args.who, e.args.amount) for e in logs] == [(alice, 100), (bob, 200)]
    only_bob = store.events.Stored.get_logs(from_block=start, argument_filters={"who": bob})
    assert [e.args.amount for e in only_bob] == [200]

    changes = log_filter.get_new_entries()
    assert [e.args.amount for e in changes] == [100, 200]
    assert log_filter.get_new_entries() == []
    assert [e.args.amount for e in log_filter.get_all_entries()] == [100, 200]
    assert len(block_filter.get_new_entries()) == 2
    assert w3.eth.uninstall_filter(block_filter.filter_id) is True
    assert w3.eth.uninstall_filter(block_filter.filter_id) is False

    # Raw eth_getLogs: address list, topic OR-lists and null wildcards, blockHash.
    mine = w3.eth.get_logs({"fromBlock": start, "address": store.address})
    topic0 = Web3.to_hex(mine[0]["topics"][0])
    who = [Web3.to_hex(entry["topics"][1]) for entry in mine]
    raw = w3.eth.get_logs({
        "fromBlock": start,
        "address": [store.address, Account.create().address],
        "topics": [None, who],
    })
    assert len(raw) == 2
    assert raw == mine
    assert w3.eth.get_logs({"fromBlock": start, "topics": [topic0, who[1]]}) == [mine[1]]
    assert w3.eth.get_logs({"blockHash": mine[1]["blockHash"]}) == [mine[1]]
    assert w3.eth.get_logs({"fromBlock": start, "topics": ["0x" + "11" * 32]}) == []


def test_fee_history_and_prices(w3):
    history = w3.eth.fee_history(4, "latest", [25, 75])
    assert len(history.baseFeePerGas) == 5
    assert len(history.gasUsedRatio) == 4 and len(history.reward) == 4
    assert all(len(r) == 2 for r in history.reward)
    assert history.oldestBlock == w3.eth.block_number - 3
    latest = w3.eth.get_block("latest")
    assert history.baseFeePerGas[-2] == latest.baseFeePerGas
    assert w3.eth.max_priority_fee > 0
    assert w3.eth.gas_price > latest.baseFeePerGas // 2


def test_pending_pool_with_automine_off(node, w3):
    sender = w3.eth.accounts[7]
    pending_filter = w3.eth.filter("pending")
    assert node.result("evm_setAutomine", [False]) is True
    try:
        start_block = w3.eth.block_number
        nonce = w3.eth.get_transaction_count(sender)
        hashes = [
            w3.eth.send_transaction({"from": sender, "to": ACCOUNTS[8].address, "value": i + 1})
            for i in range(2)
        ]
        assert w3.eth.block_number == start_block
        assert w3.eth.get_transaction_count(sender, "pending") == nonce + 2
        assert w3.eth.get_transaction_count(sender, "latest") == nonce
        assert w3.eth.get_transaction(hashes[1]).blockNumber is None
        with pytest.raises(TransactionNotFound):
            w3.eth.get_transaction_receipt(hashes[0])
        assert pending_filter.get_new_entries() == hashes
        assert node.result("pole_nodeStatus")["mempoolSize"] == 2
        node.result("evm_mine")
        mined = [w3.eth.get_transaction_receipt(h) for h in hashes]
        assert {r.blockNumber for r in mined} == {start_block + 1}
    finally:
        node.result("evm_setAutomine", [True])


def test_snapshot_and_revert(node, w3):
    stranger = Account.create().address
    head = w3.eth.block_number
    snapshot = node.result("evm_snapshot")
    tx_hash = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": stranger, "value": 7})
    assert w3.eth.get_balance(stranger) == 7
    assert node.result("evm_revert", [snapshot]) is True
    assert w3.eth.block_number == head
    assert w3.eth.get_balance(stranger) == 0
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction(tx_hash)
    with pytest.raises(BlockNotFound):  # the reverted block is gone by number too
        w3.eth.get_block(head + 1)
    assert node.result("evm_revert", [snapshot]) is False  # used up
    # The chain goes on from the restored head.
    again = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": stranger, "value": 8})
    assert w3.eth.get_transaction_receipt(again).blockNumber == head + 1
    assert w3.eth.get_balance(stranger) == 8


def test_time_travel(node, w3):
    before = w3.eth.get_block("latest").timestamp
    node.result("evm_increaseTime", [3600])
    node.result("evm_mine")
    assert w3.eth.get_block("latest").timestamp >= before + 3600
    target = w3.eth.get_block("latest").timestamp + 1000
    assert node.result("evm_setNextBlockTimestamp", [target]) is None
    node.result("evm_mine")
    assert w3.eth.get_block("latest").timestamp == target
    node.result("evm_mine", [{"blocks": 3}])
    assert w3.eth.get_block("latest").timestamp > target
    too_early = node.rpc("evm_setNextBlockTimestamp", [target])
    assert too_early["error"]["code"] == -32602


def test_transaction_rejections_over_rpc(w3):
    sender = ACCOUNTS[9]
    base = {
        "to": ACCOUNTS[0].address, "value": 1, "gas": 21_000,
        "maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9,
    }
    nonce = w3.eth.get_transaction_count(sender.address)
    foreign = sender.sign_transaction({**base, "chainId": 1, "nonce": nonce}).raw_transaction
    with pytest.raises(Web3RPCError, match="invalid chain id"):
        w3.eth.send_raw_transaction(foreign)
    w3.eth.send_raw_transaction(
        sender.sign_transaction({**base, "chainId": CHAIN_ID, "nonce": nonce}).raw_transaction
    )
    stale = sender.sign_transaction({**base, "chainId": CHAIN_ID, "nonce": nonce, "value": 2})
    with pytest.raises(Web3RPCError, match="nonce too low"):
        w3.eth.send_raw_transaction(stale.raw_transaction)
    broke = Account.create().sign_transaction({**base, "chainId": CHAIN_ID, "nonce": 0})
    with pytest.raises(Web3RPCError, match="insufficient funds"):
        w3.eth.send_raw_transaction(broke.raw_transaction)
    with pytest.raises(Web3RPCError, match="invalid transaction encoding"):
        w3.eth.send_raw_transaction(b"\x02\xc0")


def test_not_found_answers(w3):
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction("0x" + "ab" * 32)
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction_receipt("0x" + "ab" * 32)
    with pytest.raises(BlockNotFound):
        w3.eth.get_block(10**6)
    with pytest.raises(BlockNotFound):
        w3.eth.get_block("0x" + "cd" * 32)


def test_pole_methods(node, w3, tmp_path):
    status = node.result("pole_nodeStatus")
    assert int(status["headNumber"], 16) == w3.eth.block_number
    assert int(status["chainId"], 16) == CHAIN_ID
    assert status["dev"] is True and status["peers"] == 0
    assert status["datadir"] == str(node.datadir)
    assert isinstance(node.result("pole_tasks"), list)
    rejected = node.rpc("pole_submitBlock", ["0xc0"])
    assert rejected["error"]["code"] == -32000
    assert "cannot decode block" in rejected["error"]["message"]


def test_pole_tasks_lists_tasks_and_the_best_one(node, w3):
    from contracts import TASK_REGISTRY, load_artifact
    from vm_hooks.params import REGISTRY_ADDRESS

    registry = w3.eth.contract(
        address=Web3.to_checksum_address(REGISTRY_ADDRESS), abi=load_artifact(TASK_REGISTRY).abi
    )
    poster = w3.eth.accounts[8]
    digest = b"\x01" * 32
    for reward, time_limit in ((ETHER, 1000), (3 * ETHER, 1000)):
        registry.functions.post_task(digest, digest, digest, 9000, time_limit, 1).transact(
            {"from": poster, "value": reward}
        )
    tasks = node.result("pole_tasks")[-2:]
    assert [int(t["reward"], 16) for t in tasks] == [ETHER, 3 * ETHER]
    assert [t["status"] for t in tasks] == ["open", "open"]
    assert tasks[1]["poster"] == poster
    assert tasks[1]["minTrainBps"] == hex(9000)
    assert tasks[1]["modelSpec"] == "0x" + "01" * 32
    assert tasks[1]["result"] is None
    best = node.result("pole_bestTask")
    assert {**best, "anchor": None} == tasks[1]  # only the best task names its anchor
    anchor_number, anchor_hash = int(best["anchor"]["number"], 16), best["anchor"]["hash"]
    assert node.result("eth_getBlockByNumber", [hex(anchor_number), False])["hash"] == anchor_hash
    assert int(best["id"], 16) == registry.functions.best_task().call()
    assert node.result("pole_task", [best["id"]]) == tasks[1]
    missing = node.rpc("pole_task", ["0x999"])
    assert missing["error"]["code"] == -32001 and "no task 2457" in missing["error"]["message"]
