"""The `pole` namespace of web3.py: a PoLe node's ``pole_*`` JSON-RPC methods, Python values
in and out.

    w3 = pole_web3("http://127.0.0.1:8545")   # or attach_pole(w3) on a Web3 you already have
    task = w3.pole.best_task()                # a vm_hooks.task.Task, or None
    digest = w3.pole.put_blob(blob)           # bytes in, bytes out
    w3.pole.get_task(task.task_id).result     # a TaskResult once the task is settled

Declared the way web3.py declares `w3.geth.admin` (web3/geth.py): one `Method` per RPC
method; request formatters turn Python values into JSON-RPC (hex quantities, 0x data,
checksum addresses) and result formatters turn the answer back (docs/RPC-POLE.md). A node's
JSON-RPC error arrives as web3's own `Web3RPCError`; `error_message` and `error_code` read
what the node said. Both the miner process and the data node use this module, so it lives in
miner/ (below pole_chain), and it is the only place that knows the ``pole_*`` wire format on
the client side.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Optional

from eth_utils import (
    decode_hex,
    encode_hex,
    is_null,
    to_canonical_address,
    to_checksum_address,
    to_hex,
    to_int,
)
from eth_utils.curried import (
    apply_formatter_if,
    apply_formatter_to_array,
    apply_formatters_to_dict,
    apply_formatters_to_sequence,
)
from eth_utils.toolz import complement
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.method import Method
from web3.module import Module
from web3.types import RPCEndpoint

from vm_hooks.task import Task, TaskAnchor, TaskResult, TaskStatus

# --------------------------------------------------------------------------------------
# JSON-RPC values -> Python values
# --------------------------------------------------------------------------------------


def _quantity(value: str) -> int:
    return to_int(hexstr=value)


def _optional(formatter: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`formatter` for a value the node may answer with null (kept as None)."""
    return apply_formatter_if(complement(is_null), formatter)


#: (JSON key, field, parser) of the result and task objects of docs/RPC-POLE.md.
_RESULT_FIELDS = (
    ("winner", "winner", to_canonical_address),
    ("modelCommitment", "model_commitment", decode_hex),
    ("trainBps", "train_bps", _quantity),
    ("testBps", "test_bps", _quantity),
    ("releaseDigest", "release_digest", decode_hex),
    ("blockNumber", "block_number", _quantity),
)


def result_from_rpc(value: Mapping[str, Any]) -> TaskResult:
    """A task object's `result` as a TaskResult."""
    return TaskResult(**{field: parse(value[key]) for key, field, parse in _RESULT_FIELDS})


def anchor_from_rpc(value: Mapping[str, Any]) -> TaskAnchor:
    """The best task's `anchor` object: the block after which it became the best."""
    return TaskAnchor(number=_quantity(value["number"]), hash=decode_hex(value["hash"]))


_TASK_FIELDS = (
    ("id", "task_id", _quantity),
    ("poster", "poster", to_canonical_address),
    ("reward", "reward", _quantity),
    ("modelSpec", "model_spec", decode_hex),
    ("datasetDigest", "dataset_digest", decode_hex),
    ("testSetCommitment", "test_set_commitment", decode_hex),
    ("minTrainBps", "min_train_bps", _quantity),
    ("timeLimit", "time_limit", _quantity),
    ("solutionsWanted", "solutions_wanted", _quantity),
    ("postedAt", "posted_at", _quantity),
    ("deadline", "deadline", _quantity),
    ("status", "status", TaskStatus.from_label),
    ("result", "result", _optional(result_from_rpc)),
    ("anchor", "anchor", _optional(anchor_from_rpc)),
)


def task_from_rpc(value: Mapping[str, Any]) -> Task:
    """A task object of docs/RPC-POLE.md as the Task record every layer uses."""
    return Task(**{field: parse(value[key]) for key, field, parse in _TASK_FIELDS})


_NODE_STATUS_FORMATTERS = {
    "headNumber": _quantity,
    "headHash": decode_hex,
    "headTimestamp": _quantity,
    "chainId": _quantity,
}

_SEAL_FORMATTERS = {
    "parentHash": encode_hex,
    "coinbase": to_checksum_address,
    "taskId": to_hex,
    "commitment": encode_hex,
    "trainBps": to_hex,
    "testBps": to_hex,
    "releaseDigest": encode_hex,
}

#: pole_buildBlock's answer: the unsigned block (RLP) and the hash its coinbase signs.
_BUILT_BLOCK_FORMATTERS = {"block": decode_hex, "signingHash": decode_hex}


# --------------------------------------------------------------------------------------
# How a Method is told its formatters
# --------------------------------------------------------------------------------------


def _params(*formatters: Callable[[Any], Any]) -> Callable[[RPCEndpoint], Callable[..., Any]]:
    """Request formatters, one per positional parameter (web3 looks them up by method)."""
    return lambda _method: apply_formatters_to_sequence(list(formatters))


def _result(formatter: Callable[[Any], Any]) -> Callable[[RPCEndpoint, Module], Callable[..., Any]]:
    """The result formatter of one method (web3 looks it up by method and module)."""
    return lambda _method, _module: formatter


def _seal_munger(
    _module: Module,
    *,
    parent_hash: bytes,
    coinbase: bytes,
    task_id: int,
    commitment: bytes,
    train_bps: int,
    test_bps: int,
    release_digest: bytes,
) -> list[dict[str, Any]]:
    """pole_buildBlock's one parameter, the seal object, from keyword arguments."""
    return [{
        "parentHash": parent_hash, "coinbase": coinbase, "taskId": task_id,
        "commitment": commitment, "trainBps": train_bps, "testBps": test_bps,
        "releaseDigest": release_digest,
    }]


# --------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------


class PoLe(Module):
    """``w3.pole``: tasks, blobs, the commit/release/reveal messages and sealing of a PoLe node."""

    node_status: Method[Callable[[], dict[str, Any]]] = Method(
        RPCEndpoint("pole_nodeStatus"),
        is_property=True,
        result_formatters=_result(apply_formatters_to_dict(_NODE_STATUS_FORMATTERS)),
    )

    # -- tasks ------------------------------------------------------------------------

    best_task: Method[Callable[[], Optional[Task]]] = Method(
        RPCEndpoint("pole_bestTask"),
        is_property=True,
        result_formatters=_result(_optional(task_from_rpc)),
    )
    get_task: Method[Callable[[int], Task]] = Method(
        RPCEndpoint("pole_task"),
        request_formatters=_params(to_hex),
        result_formatters=_result(task_from_rpc),
    )
    tasks: Method[Callable[[], list[Task]]] = Method(
        RPCEndpoint("pole_tasks"),
        is_property=True,
        result_formatters=_result(apply_formatter_to_array(task_from_rpc)),
    )

    # -- blobs ------------------------------------------------------------------------

    put_blob: Method[Callable[[bytes], bytes]] = Method(
        RPCEndpoint("pole_putBlob"),
        request_formatters=_params(encode_hex),
        result_formatters=_result(decode_hex),
    )
    get_blob: Method[Callable[[bytes], bytes]] = Method(
        RPCEndpoint("pole_getBlob"),
        request_formatters=_params(encode_hex),
        result_formatters=_result(decode_hex),
    )

    # -- commit, release, reveal, seal ------------------------------------------------

    announce: Method[Callable[[bytes], bool]] = Method(
        RPCEndpoint("pole_announce"),
        request_formatters=_params(encode_hex),
        result_formatters=_result(bool),
    )
    announcements: Method[Callable[[int, bytes], list[bytes]]] = Method(
        RPCEndpoint("pole_announcements"),
        request_formatters=_params(to_hex, encode_hex),
        result_formatters=_result(apply_formatter_to_array(decode_hex)),
    )
    release: Method[Callable[[bytes], bool]] = Method(
        RPCEndpoint("pole_release"),
        request_formatters=_params(encode_hex),
        result_formatters=_result(bool),
    )
    get_release: Method[Callable[[int, bytes], Optional[bytes]]] = Method(
        RPCEndpoint("pole_getRelease"),
        request_formatters=_params(to_hex, encode_hex),
        result_formatters=_result(_optional(decode_hex)),
    )
    reveal_model: Method[Callable[[bytes, bytes, bytes], bytes]] = Method(
        RPCEndpoint("pole_revealModel"),
        request_formatters=_params(encode_hex, to_checksum_address, encode_hex),
        result_formatters=_result(decode_hex),
    )
    get_model: Method[Callable[[bytes], Optional[bytes]]] = Method(
        RPCEndpoint("pole_getModel"),
        request_formatters=_params(encode_hex),
        result_formatters=_result(_optional(decode_hex)),
    )
    build_block: Method[Callable[..., dict[str, bytes]]] = Method(
        RPCEndpoint("pole_buildBlock"),
        mungers=[_seal_munger],
        request_formatters=_params(apply_formatters_to_dict(_SEAL_FORMATTERS)),
        result_formatters=_result(apply_formatters_to_dict(_BUILT_BLOCK_FORMATTERS)),
    )
    submit_block: Method[Callable[[bytes], bytes]] = Method(
        RPCEndpoint("pole_submitBlock"),
        request_formatters=_params(encode_hex),
        result_formatters=_result(decode_hex),
    )

    # -- encrypted tasks: key requests and bundles (miner/encrypted_tasks.py) -----------

    request_keys: Method[Callable[[bytes], bool]] = Method(
        RPCEndpoint("pole_requestKeys"),
        request_formatters=_params(encode_hex),
        result_formatters=_result(bool),
    )
    key_requests: Method[Callable[[int, bytes], list[bytes]]] = Method(
        RPCEndpoint("pole_keyRequests"),
        request_formatters=_params(to_hex, encode_hex),
        result_formatters=_result(apply_formatter_to_array(decode_hex)),
    )
    put_keys: Method[Callable[[bytes], bool]] = Method(
        RPCEndpoint("pole_putKeys"),
        request_formatters=_params(encode_hex),
        result_formatters=_result(bool),
    )
    get_keys: Method[Callable[[int, bytes, bytes], Optional[bytes]]] = Method(
        RPCEndpoint("pole_getKeys"),
        request_formatters=_params(to_hex, encode_hex, to_checksum_address),
        result_formatters=_result(_optional(decode_hex)),
    )


# --------------------------------------------------------------------------------------
# Attaching it, and reading the node's errors
# --------------------------------------------------------------------------------------


def attach_pole(w3: Web3) -> Web3:
    """`w3` with the `pole` namespace (attached once; a second call changes nothing)."""
    if not isinstance(getattr(w3, "pole", None), PoLe):
        w3.attach_modules({"pole": PoLe})
    return w3


def pole_web3(url: str, *, timeout: float = 60.0) -> Web3:
    """A Web3 on a PoLe node's HTTP JSON-RPC endpoint, with `w3.pole`."""
    return attach_pole(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout})))


def _error_object(error: Web3RPCError) -> Mapping[str, Any]:
    response = error.rpc_response or {}
    found = response.get("error")
    return found if isinstance(found, Mapping) else {}


def error_message(error: Web3RPCError) -> str:
    """What the node said, for a one-line message (``str(error)`` is the whole error's repr)."""
    return str(_error_object(error).get("message", error.message))


def error_code(error: Web3RPCError) -> Optional[int]:
    """The JSON-RPC error code (docs/RPC-POLE.md: -32001 not found, -32010 seal refused)."""
    return _error_object(error).get("code")

