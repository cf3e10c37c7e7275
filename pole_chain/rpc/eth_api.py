"""eth_*, net_* and web3_* methods: what web3.py's HTTPProvider needs, answered like geth.

Handlers read the chain under `ctx.node.lock`. Block identifiers: "latest", "safe" and
"finalized" are the head; "earliest" is genesis; "pending" is the head's state in the next
block's context (its timestamp and number; pool transactions are not applied) for eth_call
and eth_estimateGas, the head block for block reads, and counts pooled transactions for
eth_getTransactionCount.
"""
from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import TYPE_CHECKING, Any

import rlp
from eth.constants import ZERO_ADDRESS
from eth.abc import BlockHeaderAPI, ComputationAPI, SignedTransactionAPI, StateAPI
from eth.exceptions import HeaderNotFound, Revert
from eth.vm.spoof import SpoofTransaction
from eth_abi import decode as abi_decode
from eth_hash.auto import keccak
from eth_typing import Address
from eth_utils import ValidationError, to_checksum_address

from pole_chain.node.mempool import TransactionRejected
from pole_chain.rpc import formatting as fmt
from pole_chain.rpc.dispatch import (
    EXECUTION_REVERTED,
    INVALID_PARAMS,
    RESOURCE_NOT_FOUND,
    SERVER_ERROR,
    MethodTable,
    Param,
    RpcError,
)
from pole_chain.rpc.filters import query_logs
from pole_chain.rpc.formatting import BlockRef, TransactionRequest

if TYPE_CHECKING:
    from pole_chain.node.node import Node
    from pole_chain.rpc.server import RpcContext

METHODS = MethodTable()

ERROR_STRING_SELECTOR = keccak(b"Error(string)")[:4]
GWEI = 10**9
#: eth_maxPriorityFeePerGas when recent blocks carry no transactions; and its ceiling.
DEFAULT_PRIORITY_FEE = 1 * GWEI
MAX_PRIORITY_FEE = 500 * GWEI
#: Blocks and percentile the tip suggestion samples (geth: 20 blocks, 60th percentile).
TIP_SAMPLE_BLOCKS = 20
TIP_PERCENTILE = 60
MAX_FEE_HISTORY_BLOCKS = 1024
#: eth_estimateGas stops when the search interval is within this fraction (geth: 1.5%).
ESTIMATE_ERROR_RATIO = 0.015


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "dev"


CLIENT_VERSION = (
    f"pole/v{_version('pole-chain')}/{platform.system().lower()}-{platform.machine()}/"
    f"python{sys.version_info.major}.{sys.version_info.minor}/py-evm{_version('py-evm')}"
)

# --------------------------------------------------------------------------------------
# Reading the chain (callers hold node.lock)
# --------------------------------------------------------------------------------------


def resolve_header(node: Node, ref: BlockRef) -> BlockHeaderAPI:
    """The header a block identifier names; RpcError if there is none."""
    reader = node.reader
    if ref.hash is not None:
        try:
            header = reader.header(ref.hash)
        except HeaderNotFound:
            raise RpcError(RESOURCE_NOT_FOUND, f"header not found: {ref.describe()}") from None
        if ref.require_canonical and not reader.is_canonical(header):
            raise RpcError(RESOURCE_NOT_FOUND, f"block {ref.describe()} is not canonical")
        return header
    if ref.number is not None:
        if ref.number > reader.head().block_number:  # entries a dev revert abandoned included
            raise RpcError(RESOURCE_NOT_FOUND, f"header not found: {ref.describe()}")
        try:
            return reader.canonical_header(ref.number)
        except HeaderNotFound:
            raise RpcError(RESOURCE_NOT_FOUND, f"header not found: {ref.describe()}") from None
    if ref.tag == "earliest":
        return reader.canonical_header(0)
    return reader.head()


def _find_header(node: Node, ref: BlockRef) -> BlockHeaderAPI | None:
    try:
        return resolve_header(node, ref)
    except RpcError:
        return None


def _format_block(node: Node, header: BlockHeaderAPI | None, full: bool) -> dict | None:
    if header is None:
        return None
    block = node.reader.block(header)
    return fmt.format_block(
        block, full_transactions=full, total_difficulty=node.reader.score(header)
    )


def _find_transaction(
    node: Node, tx_hash: bytes
) -> tuple[SignedTransactionAPI, BlockHeaderAPI | None, int | None] | None:
    """(tx, header, index) of a mined transaction, (tx, None, None) if pooled, else None."""
    mined = node.reader.mined_transaction(tx_hash)
    if mined is not None:
        return mined
    pooled = node.mempool.get(tx_hash)
    return (pooled, None, None) if pooled is not None else None


def _receipts_of_block(node: Node, header: BlockHeaderAPI) -> list[dict[str, Any]]:
    block = node.reader.block(header)
    receipts = node.reader.receipts(block)
    formatted = []
    previous_gas = 0
    log_index = 0
    for index, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
        formatted.append(
            fmt.format_receipt(
                tx,
                receipt,
                header=header,
                index=index,
                previous_cumulative_gas=previous_gas,
                first_log_index=log_index,
            )
        )
        previous_gas = receipt.gas_used
        log_index += len(receipt.logs)
    return formatted


# --------------------------------------------------------------------------------------
# Executing without a block: eth_call, eth_estimateGas
# --------------------------------------------------------------------------------------


def _execution_state(
    node: Node, ref: BlockRef, overrides: dict[Address, fmt.AccountOverride] | None
) -> tuple[Any, StateAPI]:
    """A throw-away VM and state after `ref`'s block; base fee 0 so unpriced calls run."""
    if ref.tag == "pending":
        head = node.reader.head()
        header = node.reader.pending_header(
            head, timestamp=node.clock.next_timestamp(head), coinbase=node.coinbase
        )
    else:
        header = resolve_header(node, ref)
    if getattr(header, "base_fee_per_gas", None):
        header = header.copy(base_fee_per_gas=0)
    vm = node.reader.vm_at(header)
    state = vm.state
    for account, override in (overrides or {}).items():
        if override.balance is not None:
            state.set_balance(account, override.balance)
        if override.nonce is not None:
            state.set_nonce(account, override.nonce)
        if override.code is not None:
            state.set_code(account, override.code)
        if override.state is not None:
            state.delete_storage(account)
            for slot, value in override.state.items():
                state.set_storage(account, slot, value)
        if override.state_diff is not None:
            for slot, value in override.state_diff.items():
                state.set_storage(account, slot, value)
    return vm, state


def _unsigned_call(
    node: Node, vm: Any, state: StateAPI, request: TransactionRequest, gas: int
) -> SpoofTransaction:
    sender = request.sender or ZERO_ADDRESS
    builder = vm.get_transaction_builder()
    nonce = state.get_nonce(sender)  # like geth, calls skip the nonce check
    to = request.to or b""
    if request.is_dynamic_fee:
        tip = request.max_priority_fee_per_gas
        fee_cap = request.max_fee_per_gas
        if fee_cap is None:
            fee_cap = tip or 0
        if tip is None:
            tip = 0
        unsigned = builder.new_unsigned_dynamic_fee_transaction(
            chain_id=node.chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=tip,
            max_fee_per_gas=fee_cap,
            gas=gas,
            to=to,
            value=request.value,
            data=request.data,
            access_list=request.access_list,
        )
    elif request.access_list or request.type == 1:
        unsigned = builder.new_unsigned_access_list_transaction(
            chain_id=node.chain_id,
            nonce=nonce,
            gas_price=request.gas_price or 0,
            gas=gas,
            to=to,
            value=request.value,
            data=request.data,
            access_list=request.access_list,
        )
    else:
        unsigned = builder.create_unsigned_transaction(
            nonce=nonce,
            gas_price=request.gas_price or 0,
            gas=gas,
            to=to,
            value=request.value,
            data=request.data,
        )
    return SpoofTransaction(unsigned, from_=sender)


def _run(state: StateAPI, tx: SpoofTransaction) -> ComputationAPI:
    """Apply `tx` to `state` and undo it; invalid transactions become RpcError -32000."""
    snapshot = state.snapshot()
    try:
        return state.apply_transaction(tx)
    except ValidationError as exc:
        raise RpcError(SERVER_ERROR, f"invalid transaction: {exc}") from exc
    finally:
        state.revert(snapshot)


def revert_reason(output: bytes) -> str | None:
    """The string of an ABI-encoded Error(string), else None."""
    if output[:4] != ERROR_STRING_SELECTOR:
        return None
    try:
        (reason,) = abi_decode(["string"], output[4:])
    except Exception:
        return None
    return reason


def execution_error(computation: ComputationAPI) -> RpcError:
    """geth's answer to a failed execution: code 3 + revert data for REVERT, else -32000."""
    error = computation.error
    if isinstance(error, Revert):
        output = computation.output
        reason = revert_reason(output)
        message = f"execution reverted: {reason}" if reason is not None else "execution reverted"
        return RpcError(EXECUTION_REVERTED, message, fmt.hex_data(output))
    detail = str(error) or type(error).__name__
    return RpcError(SERVER_ERROR, f"execution failed: {type(error).__name__}: {detail}")


def call(node: Node, request: TransactionRequest, ref: BlockRef, overrides: Any = None) -> bytes:
    with node.lock:
        vm, state = _execution_state(node, ref, overrides)
        gas = request.gas if request.gas is not None else state.gas_limit
        computation = _run(state, _unsigned_call(node, vm, state, request, gas))
    if computation.is_error:
        raise execution_error(computation)
    return computation.output


def estimate_gas(
    node: Node, request: TransactionRequest, ref: BlockRef, overrides: Any = None
) -> int:
    """The least gas (within ESTIMATE_ERROR_RATIO) with which `request` succeeds."""
    with node.lock:
        vm, state = _execution_state(node, ref, overrides)
        cap = state.gas_limit if request.gas is None else min(request.gas, state.gas_limit)
        fee = request.gas_price or request.max_fee_per_gas or 0
        if fee:  # geth: never estimate above what the balance can pay for
            available = state.get_balance(request.sender or ZERO_ADDRESS) - request.value
            cap = min(cap, max(available, 0) // fee)

        def attempt(gas: int) -> ComputationAPI:
            return _run(state, _unsigned_call(node, vm, state, request, gas))

        probe = _unsigned_call(node, vm, state, request, cap)
        floor = probe.intrinsic_gas
        if cap < floor:
            raise RpcError(
                SERVER_ERROR, f"gas required exceeds allowance ({cap}); intrinsic gas is {floor}"
            )
        best = attempt(cap)
        if best.is_error:
            if isinstance(best.error, Revert):
                raise execution_error(best)
            raise RpcError(
                SERVER_ERROR,
                f"gas required exceeds allowance ({cap}): {type(best.error).__name__}",
            )
        # Less than what it used with all the gas can only fail (short of gasleft() tricks).
        used = probe.gas_used_by(best)
        low, high = max(floor, used) - 1, cap
        if high > low + 1 and not attempt(low + 1).is_error:
            return low + 1  # plain transfers and most simple calls
        low += 1
        # Most of the rest succeed with what they used plus the 63/64 reserve: try that next.
        optimistic = min(cap, (used + best.get_gas_refund()) * 64 // 63)
        if low < optimistic < high:
            if attempt(optimistic).is_error:
                low = optimistic
            else:
                high = optimistic
        while high - low > 1 and (high - low) / high > ESTIMATE_ERROR_RATIO:
            middle = (low + high) // 2
            if attempt(middle).is_error:
                low = middle
            else:
                high = middle
        return high


# --------------------------------------------------------------------------------------
# Fees
# --------------------------------------------------------------------------------------


def suggested_priority_fee(node: Node) -> int:
    """The 60th percentile of effective tips over the last 20 blocks (1 gwei when idle)."""
    with node.lock:
        head = node.reader.head()
        tips = []
        header = head
        for _ in range(TIP_SAMPLE_BLOCKS):
            block = node.reader.block(header)
            base_fee = getattr(header, "base_fee_per_gas", 0) or 0
            tips.extend(
                fmt.effective_gas_price(tx, base_fee) - base_fee for tx in block.transactions
            )
            if header.block_number == 0:
                break
            header = node.reader.header(header.parent_hash)
    if not tips:
        return DEFAULT_PRIORITY_FEE
    tips.sort()
    return min(tips[(len(tips) - 1) * TIP_PERCENTILE // 100], MAX_PRIORITY_FEE)


def _rewards(node: Node, header: BlockHeaderAPI, percentiles: list[float]) -> list[int]:
    block = node.reader.block(header)
    if not block.transactions:
        return [0] * len(percentiles)
    base_fee = getattr(header, "base_fee_per_gas", 0) or 0
    receipts = node.reader.receipts(block)
    used, previous = [], 0
    for receipt in receipts:
        used.append(receipt.gas_used - previous)
        previous = receipt.gas_used
    tips = sorted(
        (fmt.effective_gas_price(tx, base_fee) - base_fee, gas)
        for tx, gas in zip(block.transactions, used)
    )
    rewards = []
    index, cumulative = 0, tips[0][1]
    for percentile in percentiles:
        threshold = header.gas_used * percentile / 100
        while cumulative < threshold and index < len(tips) - 1:
            index += 1
            cumulative += tips[index][1]
        rewards.append(tips[index][0])
    return rewards


def fee_history(
    node: Node, block_count: int, newest: BlockRef, percentiles: list[float]
) -> dict[str, Any]:
    with node.lock:
        newest_header = resolve_header(node, fmt.LATEST if newest.tag == "pending" else newest)
        count = min(block_count, MAX_FEE_HISTORY_BLOCKS, newest_header.block_number + 1)
        if count == 0:
            return {"oldestBlock": "0x0", "baseFeePerGas": [], "gasUsedRatio": []}
        headers = [newest_header]
        while len(headers) < count:
            headers.append(node.reader.header(headers[-1].parent_hash))
        headers.reverse()
        next_header = node.reader.child_header(newest_header)
        history: dict[str, Any] = {
            "oldestBlock": fmt.hex_int(headers[0].block_number),
            "baseFeePerGas": [
                fmt.hex_int(getattr(h, "base_fee_per_gas", 0) or 0)
                for h in [*headers, next_header]
            ],
            "gasUsedRatio": [h.gas_used / h.gas_limit if h.gas_limit else 0.0 for h in headers],
            "baseFeePerBlobGas": [
                fmt.hex_int(fmt.blob_base_fee(h)) for h in [*headers, next_header]
            ],
            "blobGasUsedRatio": [fmt.blob_gas_used_ratio(h) for h in headers],
        }
        if percentiles:
            history["reward"] = [
                [fmt.hex_int(r) for r in _rewards(node, h, percentiles)] for h in headers
            ]
        return history


# --------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------


def send_transaction(node: Node, request: TransactionRequest) -> bytes:
    """Fill in a transaction for an unlocked dev account, sign it, submit it."""
    if request.sender is None:
        raise RpcError(
            INVALID_PARAMS, 'invalid params: parameter 0 (transaction): "from" is required'
        )
    signer = node.transactions.signer_for(request.sender)
    if signer is None:
        raise RpcError(
            SERVER_ERROR,
            f"unknown account {to_checksum_address(request.sender)}: eth_sendTransaction "
            "signs only for this node's unlocked dev accounts (see eth_accounts); "
            "sign locally and use eth_sendRawTransaction",
        )
    if request.chain_id is not None and request.chain_id != node.chain_id:
        raise RpcError(
            SERVER_ERROR, f"invalid chain id {request.chain_id}, this chain is {node.chain_id}"
        )
    with node.lock:
        fields: dict[str, Any] = {
            "chainId": node.chain_id,
            "nonce": request.nonce
            if request.nonce is not None
            else node.transactions.pending_nonce(request.sender),
            "value": request.value,
            "data": request.data,
        }
        if request.to is not None:
            fields["to"] = to_checksum_address(request.to)
        if request.access_list:
            fields["accessList"] = [
                {
                    "address": to_checksum_address(account),
                    "storageKeys": [fmt.hex_word(key) for key in keys],
                }
                for account, keys in request.access_list
            ]
        if request.is_dynamic_fee:
            tip = request.max_priority_fee_per_gas
            if tip is None:
                tip = suggested_priority_fee(node)
            fee_cap = request.max_fee_per_gas
            if fee_cap is None:
                fee_cap = 2 * node.reader.next_base_fee() + tip
            fields.update(type=2, maxPriorityFeePerGas=min(tip, fee_cap), maxFeePerGas=fee_cap)
        else:
            fields["gasPrice"] = request.gas_price
            if request.access_list or request.type == 1:
                fields["type"] = 1
        fields["gas"] = (
            request.gas
            if request.gas is not None
            else estimate_gas(node, request, BlockRef(tag="pending"))
        )
        raw = bytes(signer.sign_transaction(fields).raw_transaction)
        return submit(node, raw)


def submit(node: Node, raw: bytes) -> bytes:
    try:
        return node.transactions.submit(raw)
    except TransactionRejected as exc:
        raise RpcError(SERVER_ERROR, str(exc)) from exc


# --------------------------------------------------------------------------------------
# The method table
# --------------------------------------------------------------------------------------

ADDRESS = Param("address", fmt.address)
BLOCK = Param("block", fmt.block_id, fmt.LATEST)
TX_HASH = Param("transactionHash", fmt.hash32)
BLOCK_HASH = Param("blockHash", fmt.hash32)
BLOCK_NUMBER = Param("blockNumber", fmt.block_number_or_tag)
FULL = Param("fullTransactions", fmt.boolean, False)
INDEX = Param("index", fmt.quantity)
FILTER_ID = Param("filterId", fmt.filter_id)
TRANSACTION = Param("transaction", fmt.transaction_request)
OVERRIDES = Param("stateOverrides", fmt.state_overrides, None)


@METHODS.method("web3_clientVersion")
def web3_client_version(ctx: RpcContext) -> str:
    return CLIENT_VERSION


@METHODS.method("web3_sha3", Param("data", fmt.data))
def web3_sha3(ctx: RpcContext, data: bytes) -> str:
    return fmt.hex_data(keccak(data))


@METHODS.method("net_version")
def net_version(ctx: RpcContext) -> str:
    return str(ctx.node.chain_id)


@METHODS.method("net_listening")
def net_listening(ctx: RpcContext) -> bool:
    return True


@METHODS.method("net_peerCount")
def net_peer_count(ctx: RpcContext) -> str:
    return fmt.hex_int(ctx.node.peer_count())


@METHODS.method("eth_chainId")
def eth_chain_id(ctx: RpcContext) -> str:
    return fmt.hex_int(ctx.node.chain_id)


@METHODS.method("eth_syncing")
def eth_syncing(ctx: RpcContext) -> bool | dict:
    """geth's answer: false unless a sync from a leading peer is running, then where it
    started, where the node is and the peer's head (clients wait on it before trusting
    state; a node off the network never syncs)."""
    network = ctx.node.network
    progress = network.sync.progress() if network is not None else None
    if progress is None:
        return False
    return {
        "startingBlock": fmt.hex_int(progress.starting_block),
        "currentBlock": fmt.hex_int(progress.current_block),
        "highestBlock": fmt.hex_int(progress.highest_block),
    }


@METHODS.method("eth_mining")
def eth_mining(ctx: RpcContext) -> bool:
    node = ctx.node
    return node.dev or node.mine_idle


@METHODS.method("eth_hashrate")
def eth_hashrate(ctx: RpcContext) -> str:
    return fmt.hex_int(0)


@METHODS.method("eth_coinbase")
def eth_coinbase(ctx: RpcContext) -> str:
    return fmt.hex_data(ctx.node.coinbase)


@METHODS.method("eth_accounts")
def eth_accounts(ctx: RpcContext) -> list[str]:
    return list(ctx.node.accounts)


@METHODS.method("eth_blockNumber")
def eth_block_number(ctx: RpcContext) -> str:
    with ctx.node.lock:
        return fmt.hex_int(ctx.node.reader.head().block_number)


@METHODS.method("eth_getBalance", ADDRESS, BLOCK)
def eth_get_balance(ctx: RpcContext, address: Address, block: BlockRef) -> str:
    node = ctx.node
    with node.lock:
        return fmt.hex_int(node.reader.state_at(resolve_header(node, block)).get_balance(address))


@METHODS.method("eth_getTransactionCount", ADDRESS, BLOCK)
def eth_get_transaction_count(ctx: RpcContext, address: Address, block: BlockRef) -> str:
    node = ctx.node
    if block.tag == "pending":
        return fmt.hex_int(node.transactions.pending_nonce(address))
    with node.lock:
        return fmt.hex_int(node.reader.state_at(resolve_header(node, block)).get_nonce(address))


@METHODS.method("eth_getCode", ADDRESS, BLOCK)
def eth_get_code(ctx: RpcContext, address: Address, block: BlockRef) -> str:
    node = ctx.node
    with node.lock:
        return fmt.hex_data(node.reader.state_at(resolve_header(node, block)).get_code(address))


@METHODS.method("eth_getStorageAt", ADDRESS, Param("slot", fmt.quantity), BLOCK)
def eth_get_storage_at(ctx: RpcContext, address: Address, slot: int, block: BlockRef) -> str:
    node = ctx.node
    with node.lock:
        state = node.reader.state_at(resolve_header(node, block))
        return fmt.hex_word(state.get_storage(address, slot))


@METHODS.method("eth_gasPrice")
def eth_gas_price(ctx: RpcContext) -> str:
    node = ctx.node
    with node.lock:
        return fmt.hex_int(node.reader.next_base_fee() + suggested_priority_fee(node))


@METHODS.method("eth_maxPriorityFeePerGas")
def eth_max_priority_fee_per_gas(ctx: RpcContext) -> str:
    return fmt.hex_int(suggested_priority_fee(ctx.node))


@METHODS.method("eth_blobBaseFee")
def eth_blob_base_fee(ctx: RpcContext) -> str:
    node = ctx.node
    with node.lock:
        return fmt.hex_int(fmt.blob_base_fee(node.reader.child_header()))


@METHODS.method(
    "eth_feeHistory",
    Param("blockCount", fmt.quantity),
    Param("newestBlock", fmt.block_number_or_tag),
    Param("rewardPercentiles", fmt.percentiles, []),
)
def eth_fee_history(
    ctx: RpcContext, block_count: int, newest: BlockRef, percentiles: list[float]
) -> dict[str, Any]:
    return fee_history(ctx.node, block_count, newest, percentiles)


@METHODS.method("eth_call", TRANSACTION, BLOCK, OVERRIDES)
def eth_call(ctx: RpcContext, request: TransactionRequest, block: BlockRef, overrides: Any) -> str:
    return fmt.hex_data(call(ctx.node, request, block, overrides))


@METHODS.method(
    "eth_estimateGas", TRANSACTION, Param("block", fmt.block_id, BlockRef(tag="pending")), OVERRIDES
)
def eth_estimate_gas(
    ctx: RpcContext, request: TransactionRequest, block: BlockRef, overrides: Any
) -> str:
    return fmt.hex_int(estimate_gas(ctx.node, request, block, overrides))


@METHODS.method("eth_sendRawTransaction", Param("transaction", fmt.data))
def eth_send_raw_transaction(ctx: RpcContext, raw: bytes) -> str:
    return fmt.hex_data(submit(ctx.node, raw))


@METHODS.method("eth_sendTransaction", TRANSACTION)
def eth_send_transaction(ctx: RpcContext, request: TransactionRequest) -> str:
    return fmt.hex_data(send_transaction(ctx.node, request))


@METHODS.method("eth_getTransactionByHash", TX_HASH)
def eth_get_transaction_by_hash(ctx: RpcContext, tx_hash: bytes) -> dict | None:
    node = ctx.node
    with node.lock:
        found = _find_transaction(node, tx_hash)
        if found is None:
            return None
        tx, header, index = found
        return fmt.format_transaction(tx, header, index)


@METHODS.method("eth_getRawTransactionByHash", TX_HASH)
def eth_get_raw_transaction_by_hash(ctx: RpcContext, tx_hash: bytes) -> str | None:
    node = ctx.node
    with node.lock:
        found = _find_transaction(node, tx_hash)
        return fmt.hex_data(found[0].encode()) if found is not None else None


@METHODS.method("eth_getTransactionReceipt", TX_HASH)
def eth_get_transaction_receipt(ctx: RpcContext, tx_hash: bytes) -> dict | None:
    node = ctx.node
    with node.lock:
        found = _find_transaction(node, tx_hash)
        if found is None or found[1] is None:
            return None
        _, header, index = found
        block = node.reader.block(header)
        receipts = node.reader.receipts(block)
        return fmt.format_receipt(
            block.transactions[index],
            receipts[index],
            header=header,
            index=index,
            previous_cumulative_gas=receipts[index - 1].gas_used if index else 0,
            first_log_index=sum(len(r.logs) for r in receipts[:index]),
        )


@METHODS.method("eth_getBlockReceipts", BLOCK)
def eth_get_block_receipts(ctx: RpcContext, block: BlockRef) -> list | None:
    node = ctx.node
    with node.lock:
        header = _find_header(node, block)
        return _receipts_of_block(node, header) if header is not None else None


@METHODS.method("eth_getBlockByNumber", BLOCK_NUMBER, FULL)
def eth_get_block_by_number(ctx: RpcContext, block: BlockRef, full: bool) -> dict | None:
    node = ctx.node
    with node.lock:
        return _format_block(node, _find_header(node, block), full)


@METHODS.method("eth_getBlockByHash", BLOCK_HASH, FULL)
def eth_get_block_by_hash(ctx: RpcContext, block_hash: bytes, full: bool) -> dict | None:
    node = ctx.node
    with node.lock:
        return _format_block(node, _find_header(node, BlockRef(hash=block_hash)), full)


@METHODS.method("debug_getRawBlock", BLOCK)
def debug_get_raw_block(ctx: RpcContext, block: BlockRef) -> str:
    """The RLP encoding of a block (geth's method), as pole_submitBlock takes it."""
    node = ctx.node
    with node.lock:
        return fmt.hex_data(rlp.encode(node.reader.block(resolve_header(node, block))))


def _transaction_count(node: Node, ref: BlockRef) -> str | None:
    with node.lock:
        header = _find_header(node, ref)
        if header is None:
            return None
        return fmt.hex_int(len(node.reader.block(header).transactions))


@METHODS.method("eth_getBlockTransactionCountByNumber", BLOCK_NUMBER)
def eth_get_block_transaction_count_by_number(ctx: RpcContext, block: BlockRef) -> str | None:
    return _transaction_count(ctx.node, block)


@METHODS.method("eth_getBlockTransactionCountByHash", BLOCK_HASH)
def eth_get_block_transaction_count_by_hash(ctx: RpcContext, block_hash: bytes) -> str | None:
    return _transaction_count(ctx.node, BlockRef(hash=block_hash))


@METHODS.method("eth_getUncleCountByBlockNumber", BLOCK_NUMBER)
def eth_get_uncle_count_by_block_number(ctx: RpcContext, block: BlockRef) -> str | None:
    with ctx.node.lock:
        return None if _find_header(ctx.node, block) is None else fmt.hex_int(0)


@METHODS.method("eth_getUncleCountByBlockHash", BLOCK_HASH)
def eth_get_uncle_count_by_block_hash(ctx: RpcContext, block_hash: bytes) -> str | None:
    with ctx.node.lock:
        found = _find_header(ctx.node, BlockRef(hash=block_hash))
        return None if found is None else fmt.hex_int(0)


def _transaction_at(node: Node, ref: BlockRef, index: int) -> dict | None:
    with node.lock:
        header = _find_header(node, ref)
        if header is None:
            return None
        transactions = node.reader.block(header).transactions
        if index >= len(transactions):
            return None
        return fmt.format_transaction(transactions[index], header, index)


@METHODS.method("eth_getTransactionByBlockNumberAndIndex", BLOCK_NUMBER, INDEX)
def eth_get_transaction_by_block_number_and_index(
    ctx: RpcContext, block: BlockRef, index: int
) -> dict | None:
    return _transaction_at(ctx.node, block, index)


@METHODS.method("eth_getTransactionByBlockHashAndIndex", BLOCK_HASH, INDEX)
def eth_get_transaction_by_block_hash_and_index(
    ctx: RpcContext, block_hash: bytes, index: int
) -> dict | None:
    return _transaction_at(ctx.node, BlockRef(hash=block_hash), index)


@METHODS.method("eth_getLogs", Param("filter", fmt.log_filter))
def eth_get_logs(ctx: RpcContext, criteria: fmt.LogFilter) -> list[dict]:
    return query_logs(ctx.node, criteria)


@METHODS.method("eth_newFilter", Param("filter", fmt.log_filter))
def eth_new_filter(ctx: RpcContext, criteria: fmt.LogFilter) -> str:
    return ctx.filters.install("logs", criteria)


@METHODS.method("eth_newBlockFilter")
def eth_new_block_filter(ctx: RpcContext) -> str:
    return ctx.filters.install("block")


@METHODS.method("eth_newPendingTransactionFilter")
def eth_new_pending_transaction_filter(ctx: RpcContext) -> str:
    return ctx.filters.install("pending")


@METHODS.method("eth_getFilterChanges", FILTER_ID)
def eth_get_filter_changes(ctx: RpcContext, filter_id: str) -> list:
    return ctx.filters.changes(filter_id)


@METHODS.method("eth_getFilterLogs", FILTER_ID)
def eth_get_filter_logs(ctx: RpcContext, filter_id: str) -> list[dict]:
    return query_logs(ctx.node, ctx.filters.criteria(filter_id))


@METHODS.method("eth_uninstallFilter", FILTER_ID)
def eth_uninstall_filter(ctx: RpcContext, filter_id: str) -> bool:
    return ctx.filters.uninstall(filter_id)
