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
stored with `from_peer=True` and not told (gossipsub relays it). A bundle travels in its
gossip form (`bundle_gossip_form`): without its key rows, which are the miner's SML rows and
which a receiver derives itself (`bundle_from_gossip_form`), so the widest task's bundle is
64.5 KiB on the wire instead of 2.1 MB (docs/NETWORK.md).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Optional

import numpy as np
import rlp
from eth_utils import encode_hex
from rlp.sedes import big_endian_int

from miner.encrypted_tasks import MAX_ENCRYPTED_FEATURES, KeyBundle, KeyRequest
from miner.ipfe import FunctionalKeys, IPFEFormatError, get_group, sml_rows
from miner.ipfe.scheme import DIGEST_SIZE, SCALAR_SIZE
from miner.messages import MessageError
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
        """Store a verified bundle signed by `task`'s poster; true if new (a second bundle for
        the same miner and anchor replaces nothing)."""
        bundle.verify(chain_id)
        if bundle.poster != task.poster:
            raise KeyRequestRejected(
                f"KeyBundle signed by {encode_hex(bundle.poster)}, task {task.task_id}'s poster is "
                f"{encode_hex(task.poster)}"
            )
        bundle.functional_keys()  # malformed keys: MessageError, nothing stored
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


# --------------------------------------------------------------------------------------
# A bundle on the wire: the same signed message, its key rows left out
# --------------------------------------------------------------------------------------


def bundle_gossip_form(bundle: KeyBundle) -> bytes:
    """The bundle as it is gossiped: its `keys` field holds rlp([n, master key digest, the
    scalars]) instead of the keys' encoding, which repeats the miner's SML rows (d bytes per
    key) that any node derives from the anchor and the miner. KeyRequestRejected for a
    bundle whose rows are not that SML (useless to its miner, who checks them too) or whose
    width no encrypted task has: such a bundle stays on this node."""
    keys = bundle.functional_keys()
    if keys.n > MAX_ENCRYPTED_FEATURES:
        raise KeyRequestRejected(f"KeyBundle keys for {keys.n} features: encrypted tasks take "
                                 f"at most {MAX_ENCRYPTED_FEATURES}")
    if not np.array_equal(keys.rows, sml_rows(bundle.anchor_hash, bundle.miner, keys.n)):
        raise KeyRequestRejected("KeyBundle keys are not for this miner's SML rows at this anchor")
    scalars = b"".join(value.to_bytes(SCALAR_SIZE, "big") for value in keys.sk)
    return bundle.copy(keys=rlp.encode([keys.n, keys.mpk_digest, scalars])).encode()


def bundle_from_gossip_form(carrier: KeyBundle) -> KeyBundle:
    """The signed KeyBundle a gossip form (decoded with `KeyBundle.decode`) stands for, its
    rows derived here; its signature is not checked (`verify` it). MessageError if the keys
    field is not a gossip form's. Decoding comes first so that a receiver can check the
    carrier's anchor before it pays for the rows (seconds for the widest task)."""
    try:
        n_raw, digest, scalars = rlp.decode(carrier.keys, strict=True)
        n = big_endian_int.deserialize(n_raw)
    except (rlp.DecodingError, rlp.DeserializationError, ValueError, TypeError) as error:
        raise MessageError(f"KeyBundle gossip form: {error}") from None
    if not (isinstance(digest, bytes) and isinstance(scalars, bytes)):
        raise MessageError("KeyBundle gossip form: the digest and the scalars must be bytes")
    if not 1 <= n <= MAX_ENCRYPTED_FEATURES:
        raise MessageError(f"KeyBundle gossip form: {n} features outside 1..{MAX_ENCRYPTED_FEATURES}")
    if len(digest) != DIGEST_SIZE or len(scalars) % SCALAR_SIZE:
        raise MessageError("KeyBundle gossip form: a 32-byte digest and 32-byte scalars expected")
    sk = tuple(int.from_bytes(scalars[i: i + SCALAR_SIZE], "big")
               for i in range(0, len(scalars), SCALAR_SIZE))
    try:
        keys = FunctionalKeys(get_group(), digest, sml_rows(carrier.anchor_hash, carrier.miner, n), sk)
    except IPFEFormatError as error:
        raise MessageError(f"KeyBundle gossip form: {error}") from None
    return carrier.copy(keys=keys.to_bytes())
