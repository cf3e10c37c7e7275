"""pole_* methods: the PoLe-specific side of the node.

Adding a method is one decorator line on a handler `handler(ctx, *params)`; parameters are
parsed by the `formatting` parsers named in its `Param`s.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eth.exceptions import HeaderNotFound
from eth_utils import to_checksum_address

from miner.messages import MessageError, Release, SolutionAnnouncement
from miner.encrypted_tasks import KeyBundle, KeyRequest
from pole_chain.node.blob_store import BlobLimitExceeded
from pole_chain.node.key_book import KeyBookFull, KeyRequestRejected
from pole_chain.node.block_import import BlockRejected
from pole_chain.node.sealing import BuiltBlock, SealRequest
from pole_chain.rpc import formatting as fmt
from pole_chain.node.block_import import NodeBug
from pole_chain.rpc.dispatch import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    LIMIT_EXCEEDED,
    RESOURCE_NOT_FOUND,
    SERVER_ERROR,
    InvalidParam,
    MethodTable,
    Param,
    RpcError,
)
from pole_chain.node.solution_book import SolutionRejected
from vm_hooks.task import Task

if TYPE_CHECKING:
    from pole_chain.rpc.server import RpcContext

METHODS = MethodTable()

#: A PoLe seal refused by verification (the message names the rule that failed).
SEAL_REJECTED = -32010


@METHODS.method("pole_nodeStatus")
def pole_node_status(ctx: RpcContext) -> dict[str, Any]:
    """Head, chain id, modes, peers, pool and store sizes, gossip waiting, data directory."""
    status = ctx.node.status()
    return {
        "headNumber": fmt.hex_int(status["head_number"]),
        "headHash": status["head_hash"],
        "headTimestamp": fmt.hex_int(status["head_timestamp"]),
        "chainId": fmt.hex_int(status["chain_id"]),
        "dev": status["dev"],
        "automine": status["automine"],
        "blockTime": status["block_time"],
        "mineIdle": status["mine_idle"],
        "peers": status["peers"],
        "mempoolSize": status["mempool_size"],
        "blobBytes": status["blob_bytes"],
        "pendingBlocks": status["pending_blocks"],
        "earlyGossip": status["early_gossip"],
        "datadir": status["datadir"],
    }


def format_task(task: Task) -> dict[str, Any]:
    """The task object of docs/RPC-POLE.md (`anchor` is set on the best open task only)."""
    result = task.result
    anchor = task.anchor
    return {
        "id": fmt.hex_int(task.task_id),
        "poster": to_checksum_address(task.poster),
        "reward": fmt.hex_int(task.reward),
        "modelSpec": fmt.hex_data(task.model_spec),
        "datasetDigest": fmt.hex_data(task.dataset_digest),
        "testSetCommitment": fmt.hex_data(task.test_set_commitment),
        "minTrainBps": fmt.hex_int(task.min_train_bps),
        "timeLimit": fmt.hex_int(task.time_limit),
        "solutionsWanted": fmt.hex_int(task.solutions_wanted),
        "postedAt": fmt.hex_int(task.posted_at),
        "deadline": fmt.hex_int(task.deadline),
        "status": task.status.label,
        "result": None if result is None else {
            "winner": to_checksum_address(result.winner),
            "modelCommitment": fmt.hex_data(result.model_commitment),
            "trainBps": fmt.hex_int(result.train_bps),
            "testBps": fmt.hex_int(result.test_bps),
            "releaseDigest": fmt.hex_data(result.release_digest),
            "blockNumber": fmt.hex_int(result.block_number),
        },
        "anchor": None if anchor is None else {
            "number": fmt.hex_int(anchor.number),
            "hash": fmt.hex_data(anchor.hash),
        },
    }


@METHODS.method("pole_tasks")
def pole_tasks(ctx: RpcContext) -> list[dict[str, Any]]:
    """Every task of the registry at the head (open, settled, expired), by id."""
    return [format_task(task) for task in ctx.node.tasks.all()]


@METHODS.method("pole_task", Param("taskId", fmt.quantity))
def pole_task(ctx: RpcContext, task_id: int) -> dict[str, Any]:
    try:
        return format_task(ctx.node.tasks.get(task_id))
    except KeyError as exc:
        raise RpcError(RESOURCE_NOT_FOUND, str(exc.args[0])) from exc


@METHODS.method("pole_bestTask")
def pole_best_task(ctx: RpcContext) -> dict[str, Any] | None:
    """The task miners building on the head must work on, with its anchor, or null."""
    task = ctx.node.tasks.best()
    return format_task(task) if task is not None else None


# -- blobs ----------------------------------------------------------------------------


@METHODS.method("pole_putBlob", Param("data", fmt.data))
def pole_put_blob(ctx: RpcContext, blob: bytes) -> str:
    try:
        return fmt.hex_data(ctx.node.blobs.put(blob))
    except BlobLimitExceeded as exc:
        raise RpcError(LIMIT_EXCEEDED, str(exc)) from exc


@METHODS.method("pole_getBlob", Param("digest", fmt.hash32))
def pole_get_blob(ctx: RpcContext, digest: bytes) -> str:
    if ctx.node.withholding.withheld(digest):
        raise RpcError(RESOURCE_NOT_FOUND, f"blob 0x{digest.hex()} is a test set withheld until its release")
    blob = ctx.node.solutions.blob(digest)
    if blob is None:
        raise RpcError(RESOURCE_NOT_FOUND, f"no blob 0x{digest.hex()}")
    return fmt.hex_data(blob)


# -- commit, release, reveal, seal ----------------------------------------------------


def _decoded(message_class: type, encoded: bytes) -> Any:
    """A signed message of `message_class` from its bytes; -32602 naming the class otherwise
    (the decoder's own text names it already when it says "malformed KeyRequest: ...")."""
    try:
        return message_class.decode(encoded)
    except MessageError as exc:
        text = str(exc)
        if message_class.NAME not in text:
            text = f"malformed {message_class.NAME}: {text}"
        raise RpcError(INVALID_PARAMS, text) from exc


def _task_at(ctx: RpcContext, task_id: int, anchor_hash: bytes) -> Task:
    """The task anchored at ``anchor_hash`` (with its anchor): what a message must be about."""
    try:
        task = ctx.node.tasks.anchored_at(anchor_hash)
    except HeaderNotFound as exc:
        raise RpcError(RESOURCE_NOT_FOUND, f"unknown anchor block 0x{anchor_hash.hex()}") from exc
    if task is None or task.task_id != task_id:
        anchored = "none" if task is None else task.task_id
        raise RpcError(
            SERVER_ERROR,
            f"block 0x{anchor_hash.hex()} is not the anchor of task {task_id} (it anchors {anchored})",
        )
    return task


def _stored(store: Any, *args: Any) -> bool:
    """`store(*args)` (a message and what it is checked against); its refusal as -32000, a
    full key book (this node's limit, no fault of the sender) as -32005."""
    try:
        return store(*args)
    except KeyBookFull as exc:
        raise RpcError(LIMIT_EXCEEDED, str(exc)) from exc
    except (SolutionRejected, KeyRequestRejected, MessageError) as exc:
        raise RpcError(SERVER_ERROR, str(exc)) from exc


@METHODS.method("pole_announce", Param("announcement", fmt.data))
def pole_announce(ctx: RpcContext, encoded: bytes) -> bool:
    """Store a signed SolutionAnnouncement (commit); true if it was new."""
    announcement = _decoded(SolutionAnnouncement, encoded)
    with ctx.node.lock:
        task = _task_at(ctx, announcement.task_id, announcement.anchor_hash)
        return _stored(ctx.node.add_announcement, announcement, task)


@METHODS.method(
    "pole_announcements", Param("taskId", fmt.quantity), Param("anchorHash", fmt.hash32)
)
def pole_announcements(ctx: RpcContext, task_id: int, anchor_hash: bytes) -> list[str]:
    return [fmt.hex_data(a.encode()) for a in ctx.node.solutions.announcements(task_id, anchor_hash)]


@METHODS.method("pole_release", Param("release", fmt.data))
def pole_release(ctx: RpcContext, encoded: bytes) -> bool:
    """Store the poster's signed Release; true if it was new."""
    release = _decoded(Release, encoded)
    with ctx.node.lock:
        task = _task_at(ctx, release.task_id, release.anchor_hash)
        return _stored(ctx.node.add_release, release, task)


@METHODS.method("pole_getRelease", Param("taskId", fmt.quantity), Param("anchorHash", fmt.hash32))
def pole_get_release(ctx: RpcContext, task_id: int, anchor_hash: bytes) -> str | None:
    release = ctx.node.solutions.release_for(task_id, anchor_hash)
    return fmt.hex_data(release.encode()) if release is not None else None


@METHODS.method(
    "pole_revealModel",
    Param("model", fmt.data),
    Param("coinbase", fmt.address),
    Param("anchorHash", fmt.hash32),
)
def pole_reveal_model(ctx: RpcContext, model: bytes, coinbase: bytes, anchor_hash: bytes) -> str:
    """Store a revealed model blob; returns its commitment for this coinbase and anchor."""
    try:
        return fmt.hex_data(ctx.node.reveal_model(model, coinbase, anchor_hash))
    except BlobLimitExceeded as exc:
        raise RpcError(LIMIT_EXCEEDED, str(exc)) from exc


@METHODS.method("pole_getModel", Param("commitment", fmt.hash32))
def pole_get_model(ctx: RpcContext, commitment: bytes) -> str | None:
    blob = ctx.node.solutions.model_for(commitment)
    return fmt.hex_data(blob) if blob is not None else None


def _seal_request(value: Any) -> SealRequest:
    if not isinstance(value, dict):
        raise InvalidParam(f"expected a seal object, got {type(value).__name__}")
    fields = {
        "parentHash": fmt.hash32, "coinbase": fmt.address, "taskId": fmt.quantity,
        "commitment": fmt.hash32, "trainBps": fmt.quantity, "testBps": fmt.quantity,
        "releaseDigest": fmt.hash32,
    }
    unknown = set(value) - set(fields)
    if unknown:
        raise InvalidParam(f"unknown seal fields {sorted(unknown)}")
    try:
        parsed = {name: parse(value[name]) for name, parse in fields.items()}
    except KeyError as exc:
        raise InvalidParam(f"seal field {exc.args[0]} is missing") from exc
    if parsed["trainBps"] > 10_000 or parsed["testBps"] > 10_000 or parsed["taskId"] >= 2**64:
        raise InvalidParam("accuracies are at most 10000 bps and task ids fit 8 bytes")
    return SealRequest(
        coinbase=parsed["coinbase"], task_id=parsed["taskId"],
        model_commitment=parsed["commitment"], train_bps=parsed["trainBps"],
        test_bps=parsed["testBps"], release_digest=parsed["releaseDigest"],
        parent_hash=parsed["parentHash"],
    )


@METHODS.method("pole_buildBlock", Param("seal", _seal_request))
def pole_build_block(ctx: RpcContext, request: SealRequest) -> dict[str, str]:
    """The unsigned PoLe block for a seal on the given parent, its seal verified, and the
    hash its coinbase signs; the miner signs it and sends it to pole_submitBlock."""
    try:
        built: BuiltBlock = ctx.node.sealing.build(request)
    except BlockRejected as exc:
        raise RpcError(SEAL_REJECTED, str(exc)) from exc
    except NodeBug as exc:  # logged where it happened; not a verdict on the seal
        raise RpcError(INTERNAL_ERROR, str(exc)) from exc
    return {"block": fmt.hex_data(built.encoded), "signingHash": fmt.hex_data(built.signing_hash)}


@METHODS.method("pole_submitBlock", Param("block", fmt.data))
def pole_submit_block(ctx: RpcContext, block_rlp: bytes) -> str:
    """Import an RLP-encoded block built elsewhere; returns its hash."""
    try:
        return fmt.hex_data(ctx.node.import_block(block_rlp))
    except BlockRejected as exc:
        raise RpcError(SERVER_ERROR, str(exc)) from exc
    except NodeBug as exc:  # logged where it happened; not a verdict on the block
        raise RpcError(INTERNAL_ERROR, str(exc)) from exc


# -- encrypted tasks: key requests and key bundles (docs/RPC-POLE.md) ------------------


@METHODS.method("pole_requestKeys", Param("request", fmt.data))
def pole_request_keys(ctx: RpcContext, encoded: bytes) -> bool:
    """Store a miner's signed KeyRequest for (task, anchor); refused unless the anchor block
    exists and anchors that task on this node. True if it was new."""
    request = _decoded(KeyRequest, encoded)
    with ctx.node.lock:
        task = _task_at(ctx, request.task_id, request.anchor_hash)
        return _stored(ctx.node.key_book.add_request, request, task, ctx.node.chain_id)


@METHODS.method("pole_keyRequests", Param("taskId", fmt.quantity), Param("anchorHash", fmt.hash32))
def pole_key_requests(ctx: RpcContext, task_id: int, anchor_hash: bytes) -> list[str]:
    """The key requests stored for (task, anchor): what the task's data node answers."""
    return [fmt.hex_data(r.encode()) for r in ctx.node.key_book.requests(task_id, anchor_hash)]


@METHODS.method("pole_putKeys", Param("bundle", fmt.data))
def pole_put_keys(ctx: RpcContext, encoded: bytes) -> bool:
    """Store a KeyBundle signed by the task's poster for (task, anchor, miner); true if new."""
    bundle = _decoded(KeyBundle, encoded)
    with ctx.node.lock:
        task = _task_at(ctx, bundle.task_id, bundle.anchor_hash)
        return _stored(ctx.node.key_book.add_bundle, bundle, task, ctx.node.chain_id)


@METHODS.method(
    "pole_getKeys", Param("taskId", fmt.quantity), Param("anchorHash", fmt.hash32),
    Param("miner", fmt.address),
)
def pole_get_keys(ctx: RpcContext, task_id: int, anchor_hash: bytes, miner: bytes) -> str | None:
    """The KeyBundle for (task, anchor, miner), or null while the data node has not answered."""
    bundle = ctx.node.key_book.bundle(task_id, anchor_hash, miner)
    return fmt.hex_data(bundle.encode()) if bundle is not None else None

