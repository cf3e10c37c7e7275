"""A user's contract suite on the ``pole_w3`` fixture, and checks that the chain is PoLe's."""
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import rlp
import vyper
from eth.db.atomic import AtomicDB
from eth_account import Account
from web3.exceptions import ContractLogicError

from contracts import TASK_REGISTRY, load_artifact
from pole_chain.chain.opening import open_chain
from vm_hooks.params import CHAIN_ID, DEV_ACCOUNT_BALANCE, REGISTRY_ADDRESS
from vm_hooks.genesis import dev_accounts
from vm_hooks.seal import BlockKind, Seal
from vm_hooks.vm import WrongChainIdError

# Installed, pole-chain registers these through its pytest11 entry point; importing them
# here lets this file run from a plain checkout too (same fixtures either way).
from vm_hooks.testing.pytest_plugin import pole_backend, pole_tester, pole_w3  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]

PIGGY_BANK = """
# pragma version 0.4.3
event Deposited:
    owner: indexed(address)
    amount: uint256

balances: public(HashMap[address, uint256])
total: public(uint256)

@external
@payable
def deposit():
    assert msg.value > 0, "nothing to deposit"
    self.balances[msg.sender] += msg.value
    self.total += msg.value
    log Deposited(owner=msg.sender, amount=msg.value)

@external
def withdraw(amount: uint256):
    assert self.balances[msg.sender] >= amount, "insufficient balance"
    self.balances[msg.sender] -= amount
    self.total -= amount
    send(msg.sender, amount)

@external
@view
def chain_id() -> uint256:
    return chain.id
"""


@pytest.fixture(scope="module")
def piggy_bank_build():
    return vyper.compile_code(PIGGY_BANK, output_formats=["abi", "bytecode"])


@pytest.fixture
def piggy_bank(pole_w3, piggy_bank_build):
    factory = pole_w3.eth.contract(
        abi=piggy_bank_build["abi"], bytecode=piggy_bank_build["bytecode"]
    )
    receipt = pole_w3.eth.wait_for_transaction_receipt(factory.constructor().transact())
    return pole_w3.eth.contract(address=receipt.contractAddress, abi=piggy_bank_build["abi"])


@pytest.fixture
def registry(pole_w3):
    return pole_w3.eth.contract(address=REGISTRY_ADDRESS, abi=load_artifact(TASK_REGISTRY).abi)


#
# A user's contract suite
#
def test_deploy_transact_and_read_events(pole_w3, piggy_bank):
    alice, bob = pole_w3.eth.accounts[1:3]
    for sender, amount in ((alice, 300), (bob, 50), (alice, 200)):
        tx_hash = piggy_bank.functions.deposit().transact({"from": sender, "value": amount})
        assert pole_w3.eth.wait_for_transaction_receipt(tx_hash).status == 1

    assert piggy_bank.functions.balances(alice).call() == 500
    assert piggy_bank.functions.total().call() == 550
    events = piggy_bank.events.Deposited().get_logs(from_block=0)
    assert [(e.args.owner, e.args.amount) for e in events] == [
        (alice, 300), (bob, 50), (alice, 200)
    ]
    alice_only = piggy_bank.events.Deposited().get_logs(
        from_block=0, argument_filters={"owner": alice}
    )
    assert [e.args.amount for e in alice_only] == [300, 200]

    receipt = pole_w3.eth.wait_for_transaction_receipt(
        piggy_bank.functions.withdraw(120).transact({"from": alice})
    )
    assert receipt.status == 1
    assert piggy_bank.functions.balances(alice).call() == 380
    assert pole_w3.eth.get_balance(piggy_bank.address) == 430


def test_revert_raises_contract_logic_error_with_reason(pole_w3, piggy_bank):
    withdraw = piggy_bank.functions.withdraw(1)
    with pytest.raises(ContractLogicError, match="execution reverted: insufficient balance"):
        withdraw.call()
    with pytest.raises(ContractLogicError, match="insufficient balance"):
        withdraw.transact()  # web3 estimates gas first, like against a node
    with pytest.raises(ContractLogicError, match="nothing to deposit") as raised:
        piggy_bank.functions.deposit().call({"value": 0})
    assert raised.value.data.startswith("0x08c379a0")  # the ABI-encoded Error(string)


def test_each_test_gets_a_fresh_chain(pole_w3):
    assert pole_w3.eth.block_number == 0
    assert pole_w3.eth.get_transaction_count(pole_w3.eth.accounts[0]) == 0


#
# The chain is PoLe's dev chain
#
def test_chain_id_is_pole_in_rpc_and_in_the_vm(pole_w3, piggy_bank):
    assert pole_w3.eth.chain_id == CHAIN_ID == 0x504F4C45
    assert pole_w3.net.version == str(CHAIN_ID)
    assert piggy_bank.functions.chain_id().call() == CHAIN_ID


def test_accounts_are_the_devnet_accounts(pole_w3):
    assert pole_w3.eth.accounts == [account.address for account in dev_accounts()]
    assert pole_w3.eth.get_balance(pole_w3.eth.accounts[9]) == DEV_ACCOUNT_BALANCE


def test_blocks_carry_a_dev_seal(pole_w3, piggy_bank):
    piggy_bank.functions.deposit().transact({"value": 1})
    blocks = [pole_w3.eth.get_block(n) for n in range(1, pole_w3.eth.block_number + 1)]
    assert len(blocks) == 2
    for block in blocks:
        seal = Seal.decode(bytes(block.extraData))
        assert seal == Seal.dev() and seal.kind is BlockKind.DEV
        assert block.difficulty == 1
        assert bytes(block.nonce) == bytes(8)
        assert bytes(block.mixHash) == bytes(32)


def test_task_registry_is_predeployed(pole_w3, registry):
    code = pole_w3.eth.get_code(REGISTRY_ADDRESS)
    assert bytes(code) == load_artifact(TASK_REGISTRY).runtime_bytecode
    assert registry.functions.task_count().call() == 0


def test_settlement_system_call_runs_in_tester_blocks(pole_w3, pole_tester, registry):
    reward = 10**18
    post = registry.functions.post_task(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 9000, 60, 1)
    post.transact({"value": reward})
    assert registry.functions.best_task().call() == 1
    assert pole_w3.eth.get_balance(REGISTRY_ADDRESS) == reward

    deadline = registry.functions.get_task(1).call()[9]
    pole_tester.time_travel(deadline + 10)  # mines a block past the deadline

    status = registry.functions.get_task(1).call()[10]
    assert status == 3  # expired by the block's expire_overdue system call
    assert registry.functions.best_task().call() == 0
    assert pole_w3.eth.get_balance(REGISTRY_ADDRESS) == 0  # refunded to the poster


def test_transaction_signed_for_another_chain_is_rejected(pole_w3):
    sender = dev_accounts()[3]
    transfer = {
        "to": pole_w3.eth.accounts[4],
        "value": 1,
        "gas": 21000,
        "maxFeePerGas": 2 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "nonce": 0,
    }
    for chain_id in (1, 131277322940537):  # mainnet, eth-tester's own chain
        signed = sender.sign_transaction({**transfer, "chainId": chain_id})
        with pytest.raises(WrongChainIdError, match=f"chain id {chain_id} "):
            pole_w3.eth.send_raw_transaction(signed.raw_transaction)
    unprotected = Account.sign_transaction(
        {"to": transfer["to"], "value": 1, "gas": 21000, "gasPrice": 10**9, "nonce": 0},
        sender.key,
    )
    with pytest.raises(WrongChainIdError, match="chain id None"):
        pole_w3.eth.send_raw_transaction(unprotected.raw_transaction)
    assert pole_w3.eth.block_number == 0

    signed = sender.sign_transaction({**transfer, "chainId": CHAIN_ID})
    tx_hash = pole_w3.eth.send_raw_transaction(signed.raw_transaction)
    assert pole_w3.eth.wait_for_transaction_receipt(tx_hash).status == 1


def test_tester_blocks_import_into_a_dev_node(pole_w3, pole_tester, pole_backend, piggy_bank):
    """What the tester mines, a ``pole --dev`` node accepts: same genesis, seal and state."""
    accounts = pole_w3.eth.accounts
    snapshot = pole_tester.take_snapshot()
    piggy_bank.functions.deposit().transact({"from": accounts[1], "value": 7})
    pole_tester.revert_to_snapshot(snapshot)
    pole_tester.disable_auto_mine_transactions()
    piggy_bank.functions.deposit().transact({"from": accounts[2], "value": 9, "gas": 100_000})
    pole_w3.eth.send_transaction(
        {"from": accounts[3], "to": accounts[4], "value": 1, "gasPrice": 10**9}
    )
    pole_tester.mine_block(coinbase=accounts[5])
    pole_tester.enable_auto_mine_transactions()
    pole_tester.time_travel(pole_w3.eth.get_block("pending").timestamp + 3600)

    node = open_chain(AtomicDB(), dev=True)
    tester_chain = pole_backend.chain
    head = tester_chain.get_canonical_head()
    assert node.get_canonical_head().hash == tester_chain.get_canonical_block_hash(0)
    for number in range(1, head.block_number + 1):
        block = tester_chain.get_canonical_block_by_number(number)
        block_class = node.get_vm_class(block.header).get_block_class()
        node.import_block(rlp.decode(rlp.encode(block), sedes=block_class))
    assert node.get_canonical_head() == head
    assert len(node.get_canonical_block_by_number(2).transactions) == 2
    assert piggy_bank.functions.total().call() == 9


def test_plugin_serves_fixtures_to_a_user_suite(tmp_path):
    """Run a user's test file in its own pytest, with the plugin loaded the way users get it."""
    (tmp_path / "test_user_suite.py").write_text(
        textwrap.dedent(
            """
            def test_first(pole_w3, pole_tester, pole_backend):
                assert pole_w3.provider.ethereum_tester is pole_tester
                assert pole_tester.backend is pole_backend
                assert pole_w3.eth.chain_id == 0x504F4C45
                pole_w3.eth.send_transaction(
                    {"to": pole_w3.eth.accounts[1], "value": 1}
                )
                assert pole_w3.eth.block_number == 1

            def test_second_starts_fresh(pole_w3):
                assert pole_w3.eth.block_number == 0
            """
        )
    )
    installed = any(ep.name == "pole" for ep in entry_points(group="pytest11"))
    load_plugin = [] if installed else ["-p", "vm_hooks.testing.pytest_plugin"]
    python_path = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *load_plugin,
         "test_user_suite.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, python_path))},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
