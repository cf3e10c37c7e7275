"""Calls into the task registry from inside the VM: read-only views and system calls.

Consensus code cannot go through web3 (there is no node yet while a block is validated), so
it runs EVM messages against a py-evm state directly, encoding with the registry's own ABI.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Optional, Sequence

from eth.constants import ZERO_ADDRESS
import eth_abi
from eth.abc import ComputationAPI, StateAPI
from eth.vm.message import Message
from eth_typing import Address
from eth_utils import (
    ValidationError,
    function_abi_to_4byte_selector,
    get_abi_input_types,
    get_abi_output_types,
    to_canonical_address,
)

from contracts import TASK_REGISTRY, load_artifact
from vm_hooks.params import REGISTRY_ADDRESS

CALL_GAS: Final = 30_000_000

TASK_OPEN: Final = 1
TASK_SETTLED: Final = 2
TASK_EXPIRED: Final = 3
#: How task states are named outside the VM (JSON-RPC, the client, the command line).
TASK_STATUS_NAMES: Final = {TASK_OPEN: "open", TASK_SETTLED: "settled", TASK_EXPIRED: "expired"}


class RegistryCallError(ValidationError):
    """A registry call failed where the protocol requires it to succeed."""


@dataclass(frozen=True)
class Task:
    """A task as the registry stores it (field names follow the Vyper struct)."""

    task_id: int
    poster: bytes
    reward: int
    model_spec: bytes
    dataset_digest: bytes
    test_set_commitment: bytes
    min_train_bps: int
    time_limit: int
    solutions_wanted: int
    posted_at: int
    deadline: int
    status: int

    @property
    def is_open(self) -> bool:
        return self.status == TASK_OPEN


def _function_abi(name: str) -> dict:
    for entry in load_artifact(TASK_REGISTRY).abi:
        if entry.get("type") == "function" and entry["name"] == name:
            return entry
    raise KeyError(f"task registry has no function {name!r}")


def encode_call(name: str, args: Sequence[Any] = ()) -> bytes:
    abi = _function_abi(name)
    return function_abi_to_4byte_selector(abi) + eth_abi.encode(
        get_abi_input_types(abi), list(args)
    )


def decode_output(name: str, output: bytes) -> tuple:
    return tuple(eth_abi.decode(get_abi_output_types(_function_abi(name)), output))


def execute(state: StateAPI, sender: Address, data: bytes) -> ComputationAPI:
    """Run one message to the registry on ``state``; the caller keeps or reverts changes."""
    message = Message(
        gas=CALL_GAS,
        to=REGISTRY_ADDRESS,
        sender=sender,
        value=0,
        data=data,
        code=state.get_code(REGISTRY_ADDRESS),
    )
    context = state.get_transaction_context_class()(gas_price=0, origin=sender)
    return state.computation_class.apply_message(state, message, context)


def view(state: StateAPI, name: str, args: Sequence[Any] = ()) -> tuple:
    """A read-only registry call: every change it makes is reverted."""
    snapshot = state.snapshot()
    try:
        computation = execute(state, ZERO_ADDRESS, encode_call(name, args))
    finally:
        state.revert(snapshot)
    if computation.is_error:
        raise RegistryCallError(f"registry view {name} failed: {computation.error!r}")
    return decode_output(name, computation.output)


def read_task(state: StateAPI, task_id: int) -> Task:
    (fields,) = view(state, "get_task", [task_id])
    names = [c["name"] for c in _function_abi("get_task")["outputs"][0]["components"]]
    values = dict(zip(names, fields))
    values["poster"] = to_canonical_address(values["poster"])
    return Task(task_id=task_id, **values)


def best_open_task(state: StateAPI) -> Optional[Task]:
    """The task every miner must work on at this state, or None when nothing is open."""
    (task_id,) = view(state, "best_task")
    return read_task(state, task_id) if task_id else None
