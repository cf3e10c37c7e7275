"""Calls into the task registry from inside the VM: read-only views and system calls.

Consensus code cannot go through web3 (there is no node yet while a block is validated), so
it runs EVM messages against a py-evm state directly, encoding with the registry's own ABI.
"""
from __future__ import annotations

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
from vm_hooks.task import Task, TaskResult, TaskStatus  # the records registry reads return

CALL_GAS: Final = 30_000_000


class RegistryCallError(ValidationError):
    """A registry call failed where the protocol requires it to succeed."""


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


def _struct(name: str, values: tuple) -> dict[str, Any]:
    """A struct returned by registry view `name`, by its Vyper field names."""
    components = _function_abi(name)["outputs"][0]["components"]
    return dict(zip((c["name"] for c in components), values))


def read_result(state: StateAPI, task_id: int) -> TaskResult:
    """What settlement recorded for a settled task."""
    (fields,) = view(state, "get_result", [task_id])
    values = _struct("get_result", fields)
    values["winner"] = to_canonical_address(values["winner"])
    return TaskResult(**values)


def read_task(state: StateAPI, task_id: int) -> Task:
    """Task `task_id` as the registry stores it at `state`, with its result once settled."""
    (fields,) = view(state, "get_task", [task_id])
    values = _struct("get_task", fields)
    values["poster"] = to_canonical_address(values["poster"])
    values["status"] = TaskStatus(values["status"])
    settled = values["status"] is TaskStatus.SETTLED
    return Task(task_id=task_id, result=read_result(state, task_id) if settled else None, **values)


def best_open_task(state: StateAPI) -> Optional[Task]:
    """The task every miner must work on at this state, or None when nothing is open."""
    (task_id,) = view(state, "best_task")
    return read_task(state, task_id) if task_id else None


def best_anchor(state: StateAPI) -> tuple[int, int]:
    """(task id, anchor block number): the best open task after the latest block at this
    state and the number of the block after which it became best (0, n when none is open)."""
    task_id, number = view(state, "best_anchor")
    return task_id, number
