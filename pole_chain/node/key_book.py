"""The node's key requests and key bundles of encrypted tasks (miner/encrypted_tasks.py).

A miner posts a signed KeyRequest for (task, anchor) to its node; the task's data node polls
its node for the requests of the task's anchor and posts a KeyBundle for each, signed by the
poster; the miner fetches its bundle. The node checks what it can without the data node's
secret: signatures, that the anchor exists and anchors the task on this node (the RPC layer
does that with `TaskViews.anchored_at`, the gossip sink likewise), that a bundle is signed by
the task's poster. Kept in memory, bounded: keys matter only while a task is being mined, and
a data node that is online serves a lost request again when the miner asks again.

Miner and data node need not use the same node: what a node stores from its own clients is
told to its listeners (the network service, which gossips it); what a peer gossiped is
stored with `from_peer=True` and not told (gossipsub relays it). A bundle carries no key rows
(the miner's SML rows, which the miner derives itself), so the node stores and gossips the
same bytes, 256.5 KiB at most (docs/NETWORK.md), and never pays for deriving rows.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Optional

from eth_utils import encode_hex

from miner.encrypted_tasks import KeyBundle, KeyRequest
from vm_hooks.task import Task

#: (task, anchor) pairs remembered; the oldest is dropped first.
MAX_ANCHORS = 64
#: Requests and bundles kept per (task, anchor): one per miner.
MAX_MINERS_PER_ANCHOR = 1024

RequestListener = Callable[[KeyRequest], None]
BundleListener = Callable[[KeyBundle], None]


class KeyRequestRejected(ValueError):
    """A key request or bundle the node will not store; the message says why."""


class KeyBookFull(KeyRequestRejected):
    """The (task, anchor) already holds MAX_MINERS_PER_ANCHOR of them: this node's policy,
    no fault of whoever sent it."""


class KeyBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (task id, anchor hash) -> {"requests": {miner: KeyRequest}, "bundles": {miner: KeyBundle}}
        self._anchors: OrderedDict[tuple[int, bytes], dict] = OrderedDict()
        self._listeners: list[tuple[RequestListener, BundleListener]] = []

    def subscribe(self, on_request: RequestListener, on_bundle: BundleListener) -> None:
        """Be told of every request and bundle newly stored from this node's own clients.
        Called on the storing thread (which may hold the node lock): listeners must not block."""
        self._listeners.append((on_request, on_bundle))

    def _slot(self, task_id: int, anchor_hash: bytes) -> dict:
        key = (task_id, bytes(anchor_hash))
        slot = self._anchors.get(key)
        if slot is None:
            slot = self._anchors[key] = {"requests": OrderedDict(), "bundles": {}}
            while len(self._anchors) > MAX_ANCHORS:
                self._anchors.popitem(last=False)
        self._anchors.move_to_end(key)
        return slot

    def add_request(self, request: KeyRequest, task: Task, chain_id: int, *,
                    from_peer: bool = False) -> bool:
        """Store a verified request for `task` (anchored at the request's anchor); true if new."""
        request.verify(chain_id)
        with self._lock:
            requests = self._slot(task.task_id, request.anchor_hash)["requests"]
            if request.miner in requests:
                return False
            if len(requests) >= MAX_MINERS_PER_ANCHOR:
                raise KeyBookFull(f"already {MAX_MINERS_PER_ANCHOR} key requests for this anchor")
            requests[request.miner] = request
        if not from_peer:
            for on_request, _ in self._listeners:
                on_request(request)
        return True

    def requests(self, task_id: int, anchor_hash: bytes) -> list[KeyRequest]:
        with self._lock:
            slot = self._anchors.get((task_id, bytes(anchor_hash)))
            return [] if slot is None else list(slot["requests"].values())

    def add_bundle(self, bundle: KeyBundle, task: Task, chain_id: int, *,
                   from_peer: bool = False) -> bool:
        """Store a verified bundle signed by `task`'s poster (well-formed by construction:
        KeyBundle checks its shape and scalars); true if new (a second bundle for the same
        miner and anchor replaces nothing)."""
        bundle.verify(chain_id)
        if bundle.poster != task.poster:
            raise KeyRequestRejected(
                f"KeyBundle signed by {encode_hex(bundle.poster)}, task {task.task_id}'s poster is "
                f"{encode_hex(task.poster)}"
            )
        with self._lock:
            slot = self._slot(task.task_id, bundle.anchor_hash)
            if bundle.miner in slot["bundles"]:
                return False
            if len(slot["bundles"]) >= MAX_MINERS_PER_ANCHOR:
                raise KeyBookFull(f"already {MAX_MINERS_PER_ANCHOR} key bundles for this anchor")
            slot["bundles"][bundle.miner] = bundle
        if not from_peer:
            for _, on_bundle in self._listeners:
                on_bundle(bundle)
        return True

    def bundle(self, task_id: int, anchor_hash: bytes, miner: bytes) -> Optional[KeyBundle]:
        with self._lock:
            slot = self._anchors.get((task_id, bytes(anchor_hash)))
            return None if slot is None else slot["bundles"].get(bytes(miner))
