"""The settlement system call, run in ``finalize_block`` so mining and import agree.

Every block after genesis expires the registry's overdue tasks (refunding their posters);
a PoLe block first settles its task: the escrow goes to the block's coinbase and the result
is recorded in registry storage (system-call logs reach no receipt, so storage is the record).
Last, the registry notes the block after which the best open task became the best: the task's
anchor (docs/PROTOCOL.md, "Task anchor").
"""
from __future__ import annotations

from eth.abc import BlockHeaderAPI, StateAPI
from eth_utils import to_checksum_address

from vm_hooks.params import SYSTEM_ADDRESS

from .registry_calls import RegistryCallError, encode_call, execute
from .seal import BlockKind, read_seal


def system_call(state: StateAPI, name: str, args: list) -> None:
    """Run a registry function as the system address; a failure invalidates the block."""
    snapshot = state.snapshot()
    computation = execute(state, SYSTEM_ADDRESS, encode_call(name, args))
    if computation.is_error:
        state.revert(snapshot)
        raise RegistryCallError(f"settlement call {name}{tuple(args)} failed: {computation.error}")
    state.commit(snapshot)
    # Each system call is its own transaction boundary (EIP-1153: transient storage ends).
    state.clear_transient_storage()


def settle_block(state: StateAPI, header: BlockHeaderAPI) -> None:
    sealed = read_seal(header)
    if sealed.kind is BlockKind.POLE:
        system_call(
            state,
            "settle",
            [
                sealed.task_id,
                to_checksum_address(sealed.miner),
                sealed.commitment,
                sealed.train_bps,
                sealed.test_bps,
                sealed.release_digest_prefix.ljust(32, b"\x00"),
            ],
        )
    system_call(state, "expire_overdue", [header.timestamp])
    # Last, so the anchor sees this block's settlement and expiries (docs/PROTOCOL.md).
    system_call(state, "note_best_task", [header.block_number])
