"""A small real py-evm chain for the registry's unit tests.

Stock eth-tester cannot send from the system address, so this harness drives py-evm
directly: a Prague MiningChain (no seal checks), a genesis with funded accounts and the
registry's runtime code at its fixed address, signed user transactions (one per block, like
an auto-mining devnet), read-only calls, and system calls from SYSTEM_ADDRESS run the way
the settlement hook runs them: a message applied straight to the block's state.

The constants repeat pole_chain/constants.py on purpose: these tests pin the contract, not
the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from eth.abc import ComputationAPI
from eth.chains.base import MiningChain
from eth.consensus import NoProofConsensus
from eth.constants import SYSTEM_ADDRESS, SYSTEM_MESSAGE_GAS, ZERO_ADDRESS
from eth.db.atomic import AtomicDB
from eth.vm.forks import PragueVM
from eth.vm.message import Message
from eth_abi import decode, encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import (
    collapse_if_tuple,
    event_abi_to_log_topic,
    function_abi_to_4byte_selector,
    keccak,
    to_canonical_address,
    to_checksum_address,
)

from contracts import TASK_REGISTRY, load_artifact

CHAIN_ID = 0x504F4C45
REGISTRY_ADDRESS = to_checksum_address("0x00000000000000000000000000000000506f4c45")
SYSTEM = to_checksum_address(SYSTEM_ADDRESS)
GENESIS_TIMESTAMP = 1_750_000_000
BLOCK_INTERVAL = 12
ETHER = 10**18
FUNDING = 1_000_000 * ETHER
ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)


class PoLeTestChain(MiningChain):
    vm_configuration = ((0, PragueVM.configure(consensus_class=NoProofConsensus)),)
    chain_id = CHAIN_ID


@dataclass
class Event:
    name: str
    address: str
    args: dict[str, Any]


@dataclass
class Outcome:
    """What one transaction or system call did."""

    computation: ComputationAPI
    gas_used: int
    fee: int = 0  # wei the sender paid for gas (0 for system calls)
    events: list[Event] = field(default_factory=list)

    @property
    def reverted(self) -> bool:
        return self.computation.is_error

    @property
    def revert_reason(self) -> str | None:
        output = self.computation.output
        if self.reverted and output[:4] == ERROR_SELECTOR:
            return decode(["string"], output[4:])[0]
        return None


def _function_abi(abi: list, name: str) -> dict:
    matches = [item for item in abi if item["type"] == "function" and item["name"] == name]
    assert len(matches) == 1, f"no single function {name!r} in ABI"
    return matches[0]


def encode_call(abi: list, name: str, *args: Any) -> bytes:
    fn = _function_abi(abi, name)
    types = [collapse_if_tuple(i) for i in fn["inputs"]]
    return function_abi_to_4byte_selector(fn) + encode(types, list(args))


def _pythonic(abi_type: dict, value: Any) -> Any:
    """Checksum addresses, structs as dicts keyed by field name, arrays as lists."""
    if abi_type["type"] == "address":
        return to_checksum_address(value)
    if abi_type["type"] == "tuple":
        return {c["name"]: _pythonic(c, v) for c, v in zip(abi_type["components"], value)}
    if abi_type["type"].endswith("[]"):
        return list(value)
    return value


def decode_result(abi: list, name: str, output: bytes) -> Any:
    fn = _function_abi(abi, name)
    values = decode([collapse_if_tuple(o) for o in fn["outputs"]], output)
    values = [_pythonic(o, v) for o, v in zip(fn["outputs"], values)]
    return values[0] if len(values) == 1 else values


def decode_events(abi: list, computation: ComputationAPI) -> list[Event]:
    by_topic = {
        event_abi_to_log_topic(item): item for item in abi if item["type"] == "event"
    }
    events = []
    for address, topics, data in computation.get_log_entries():
        event_abi = by_topic[topics[0].to_bytes(32, "big")]
        indexed = [i for i in event_abi["inputs"] if i["indexed"]]
        plain = [i for i in event_abi["inputs"] if not i["indexed"]]
        values = [
            decode([i["type"]], topic.to_bytes(32, "big"))[0]
            for i, topic in zip(indexed, topics[1:])
        ]
        values += decode([i["type"] for i in plain], data)
        args = {i["name"]: _pythonic(i, v) for i, v in zip(indexed + plain, values)}
        events.append(Event(event_abi["name"], to_checksum_address(address), args))
    return events


class RegistryChain:
    """A fresh chain with the registry predeployed and ten funded accounts."""

    def __init__(self) -> None:
        self.artifact = load_artifact(TASK_REGISTRY)
        self.abi = self.artifact.abi
        self.accounts: list[LocalAccount] = [
            Account.from_key(keccak(text=f"pole registry test account {i}")) for i in range(10)
        ]
        genesis_state = {
            to_canonical_address(a.address): _account(balance=FUNDING) for a in self.accounts
        }
        genesis_state[to_canonical_address(REGISTRY_ADDRESS)] = _account(
            code=self.artifact.runtime_bytecode
        )
        genesis_params = {
            "coinbase": ZERO_ADDRESS,
            "difficulty": 0,
            "gas_limit": 30_000_000,
            "extra_data": b"",
            "mix_hash": b"\x00" * 32,
            "nonce": b"\x00" * 8,
            "timestamp": GENESIS_TIMESTAMP,
        }
        self.chain = PoLeTestChain.from_genesis(AtomicDB(), genesis_params, genesis_state)
        self.chain.set_header_timestamp(GENESIS_TIMESTAMP + BLOCK_INTERVAL)

    # -- time and blocks --
    @property
    def pending_timestamp(self) -> int:
        return self.chain.header.timestamp

    @property
    def pending_block_number(self) -> int:
        return self.chain.header.block_number

    def warp(self, seconds: int) -> None:
        """Move the pending block's timestamp forward."""
        self.chain.set_header_timestamp(self.chain.header.timestamp + seconds)

    def mine(self) -> None:
        block = self.chain.mine_block()
        self.chain.set_header_timestamp(block.header.timestamp + BLOCK_INTERVAL)

    # -- state --
    def balance(self, address: str) -> int:
        return self.chain.get_vm().state.get_balance(to_canonical_address(address))

    def code(self, address: str) -> bytes:
        return self.chain.get_vm().state.get_code(to_canonical_address(address))

    # -- user transactions --
    def send(
        self,
        sender: LocalAccount,
        to: str | None,
        data: bytes = b"",
        value: int = 0,
        gas: int = 3_000_000,
    ) -> Outcome:
        """Sign a type-2 transaction, apply it and mine it in a block of its own."""
        vm = self.chain.get_vm()
        tx = {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": vm.state.get_nonce(to_canonical_address(sender.address)),
            "value": value,
            "data": data,
            "gas": gas,
            "maxFeePerGas": 100 * 10**9,
            "maxPriorityFeePerGas": 0,
        }
        if to is not None:
            tx["to"] = to
        raw = sender.sign_transaction(tx).raw_transaction
        signed = vm.get_transaction_builder().decode(bytes(raw))
        base_fee = self.chain.header.base_fee_per_gas
        _, receipt, computation = self.chain.apply_transaction(signed)
        self.mine()
        return Outcome(
            computation=computation,
            gas_used=receipt.gas_used,
            fee=receipt.gas_used * base_fee,
            events=decode_events(self.abi, computation),
        )

    def transact(self, sender: LocalAccount, name: str, *args: Any, value: int = 0) -> Outcome:
        """Call a registry function in a transaction from a user account."""
        return self.send(sender, REGISTRY_ADDRESS, encode_call(self.abi, name, *args), value)

    def deploy(self, sender: LocalAccount, bytecode: bytes) -> str:
        outcome = self.send(sender, None, bytecode)
        assert not outcome.reverted, outcome.computation.error
        (created,) = outcome.computation.contracts_created
        return to_checksum_address(created)

    # -- calls without a transaction --
    def _apply_message(self, sender: str, data: bytes, gas: int = SYSTEM_MESSAGE_GAS):
        state = self.chain.get_vm().state
        registry = to_canonical_address(REGISTRY_ADDRESS)
        message = Message(
            gas=gas,
            to=registry,
            sender=to_canonical_address(sender),
            value=0,
            data=data,
            code=state.get_code(registry),
            code_address=registry,
        )
        context = state.get_transaction_context_class()(
            gas_price=0, origin=to_canonical_address(sender)
        )
        computation = state.computation_class.apply_message(state, message, context)
        return state, computation

    def call(self, name: str, *args: Any) -> Any:
        """Run a view on the pending state and decode its result; nothing is kept."""
        _, computation = self._apply_message(ZERO_ADDRESS, encode_call(self.abi, name, *args))
        if computation.is_error:
            raise computation.error
        return decode_result(self.abi, name, computation.output)

    def system_call(self, name: str, *args: Any) -> Outcome:
        """Call the registry from SYSTEM_ADDRESS, as the settlement hook does, and mine.

        No transaction, no nonce, no fee: the message is applied to the pending block's
        state, which is persisted into the pending header before the block is mined.
        """
        state, computation = self._apply_message(SYSTEM, encode_call(self.abi, name, *args))
        state.clear_transient_storage()  # a transaction boundary would do this
        state.persist()
        self.chain.header = self.chain.header.copy(state_root=state.state_root)
        self.mine()
        return Outcome(
            computation=computation,
            gas_used=SYSTEM_MESSAGE_GAS - computation.get_gas_remaining(),
            events=decode_events(self.abi, computation),
        )


def _account(balance: int = 0, code: bytes = b"") -> dict:
    return {"balance": balance, "nonce": 0, "code": code, "storage": {}}


@pytest.fixture
def registry() -> RegistryChain:
    return RegistryChain()
