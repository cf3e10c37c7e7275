"""Dev-node controls, named as in Hardhat/anvil: evm_mine, snapshots, time travel.

Registered with dev_only=True: a non-dev node answers -32601 and says to use --dev.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pole_chain.rpc import formatting as fmt
from pole_chain.rpc.dispatch import (
    INVALID_PARAMS,
    SERVER_ERROR,
    InvalidParam,
    MethodTable,
    Param,
    RpcError,
)

if TYPE_CHECKING:
    from pole_chain.rpc.server import RpcContext

METHODS = MethodTable()

#: evm_mine mines at most this many blocks per call.
MAX_BLOCKS_PER_CALL = 10_000


def _mine_options(value: Any) -> tuple[int, int | None]:
    """evm_mine's optional argument: a timestamp, or {"timestamp"?, "blocks"?} (anvil)."""
    if isinstance(value, dict):
        unknown = set(value) - {"timestamp", "blocks"}
        if unknown:
            raise InvalidParam(f"unknown field(s) {', '.join(sorted(unknown))}")
        blocks = fmt.quantity(value["blocks"]) if value.get("blocks") is not None else 1
        timestamp = fmt.quantity(value["timestamp"]) if value.get("timestamp") is not None else None
    else:
        blocks, timestamp = 1, fmt.quantity(value)
    if not 1 <= blocks <= MAX_BLOCKS_PER_CALL:
        raise InvalidParam(f"blocks must be from 1 to {MAX_BLOCKS_PER_CALL}, got {blocks}")
    return blocks, timestamp


def _refused(exc: Exception) -> RpcError:
    return RpcError(SERVER_ERROR, str(exc))


@METHODS.method("evm_mine", Param("options", _mine_options, (1, None)), dev_only=True)
def evm_mine(ctx: RpcContext, options: tuple[int, int | None]) -> str:
    blocks, timestamp = options
    try:
        ctx.node.dev_controls.mine(blocks, timestamp)
    except ValueError as exc:
        raise _refused(exc) from exc
    return "0x0"


@METHODS.method("evm_snapshot", dev_only=True)
def evm_snapshot(ctx: RpcContext) -> str:
    return fmt.hex_int(ctx.node.dev_controls.snapshot())


@METHODS.method("evm_revert", Param("snapshotId", fmt.quantity), dev_only=True)
def evm_revert(ctx: RpcContext, snapshot_id: int) -> bool:
    return ctx.node.dev_controls.revert(snapshot_id)


@METHODS.method("evm_increaseTime", Param("seconds", fmt.quantity), dev_only=True)
def evm_increase_time(ctx: RpcContext, seconds: int) -> int:
    return ctx.node.dev_controls.increase_time(seconds)


@METHODS.method("evm_setNextBlockTimestamp", Param("timestamp", fmt.quantity), dev_only=True)
def evm_set_next_block_timestamp(ctx: RpcContext, timestamp: int) -> None:
    try:
        ctx.node.dev_controls.set_next_block_timestamp(timestamp)
    except ValueError as exc:
        raise RpcError(INVALID_PARAMS, f"invalid params: parameter 0 (timestamp): {exc}") from exc
    return None


@METHODS.method("evm_setAutomine", Param("enabled", fmt.boolean), dev_only=True)
def evm_set_automine(ctx: RpcContext, enabled: bool) -> bool:
    ctx.node.dev_controls.set_automine(enabled)
    return True
