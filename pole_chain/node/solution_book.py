"""A node's record of one height's commit/release traffic, and the blobs it refers to.

Announcements are gossip: kept in memory, per (task, anchor): the block after which the task
became best, which every announcement, release and commitment for it names. Releases and revealed models
are what blocks are checked against, so they are stored: their bytes in the blob store
(content-addressed) and their lookups (release digest prefix -> release, commitment ->
model blob) in the chain database, so a restarted node can still verify and serve them.

A stored release keeps (blob store budget) everything a PoLe block answering it refers to:
the release, its test set, the task's dataset and model spec, and the models it admits. A
block is valid only if such a release admits its commitment, so the blobs of every accepted
PoLe block are kept this way.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Dict, List, Optional

from eth.abc import AtomicDatabaseAPI
from eth_utils import encode_hex

from miner.encrypted_tasks import clear_digest_of
from miner.messages import Release, SolutionAnnouncement, commitment_for
from miner.release_rules import ReleaseRefused, check_release
from vm_hooks.task import Task
from vm_hooks.seal import RELEASE_DIGEST_PREFIX_SIZE

from pole_chain.node.blob_store import BlobNotFound, BlobStore
from vm_hooks.params import CHAIN_ID

_RELEASE_KEY = b"pole:release-prefix:"
_MODEL_KEY = b"pole:model-commitment:"
_RELEASE_FOR_KEY = b"pole:release-for:"
_RELEASED_TEST_SET_KEY = b"pole:released-test-set:"
_ADMITTED_KEY = b"pole:admitted-commitment:"
#: (task, anchor) pairs whose announcements are kept in memory; older ones are dropped (they
#: are gossip: only the release, which is stored, matters once an anchor is answered).
MAX_ANNOUNCED_HEIGHTS = 256
#: Announcements held per (task, anchor): a bound on memory, well above what a release
#: admits (64).
MAX_ANNOUNCEMENTS_PER_HEIGHT = 1024


class SolutionRejected(ValueError):
    """An announcement, release or model that this node will not store or relay."""


def _height_key(task_id: int, anchor_hash: bytes) -> bytes:
    return task_id.to_bytes(8, "big") + anchor_hash


def _anchor_of(task: Task) -> bytes:
    """The anchor hash of ``task`` as the node found it (the task anchored at a message's
    anchor block, see TaskViews.anchored_at)."""
    if task.anchor is None:
        raise SolutionRejected(f"task {task.task_id} has no anchor here")
    return task.anchor.hash


class SolutionBook:
    def __init__(self, db: AtomicDatabaseAPI, blobs: BlobStore) -> None:
        self._db = db
        self.blobs = blobs
        self._lock = threading.Lock()
        self._announcements: "OrderedDict[bytes, Dict[bytes, SolutionAnnouncement]]" = OrderedDict()

    # -- blobs -------------------------------------------------------------------------
    def blob(self, digest: bytes) -> Optional[bytes]:
        try:
            return self.blobs.get(digest)
        except BlobNotFound:
            return None

    # -- announcements (commit) --------------------------------------------------------
    def add_announcement(self, announcement: SolutionAnnouncement, task: Task) -> bool:
        """Store a verified announcement for ``task``, anchored at the announcement's anchor;
        False if known."""
        announcement.verify(CHAIN_ID)
        if (
            announcement.task_id != task.task_id
            or announcement.anchor_hash != _anchor_of(task)
            or not task.is_open
        ):
            raise SolutionRejected(
                f"announcement for task {announcement.task_id} at anchor "
                f"{encode_hex(announcement.anchor_hash)}, which anchors task {task.task_id}"
            )
        if self.release_for(announcement.task_id, announcement.anchor_hash) is not None:
            raise SolutionRejected(
                f"task {task.task_id} was already released at this anchor: announcements "
                "after the release are not admitted"
            )
        key = _height_key(announcement.task_id, announcement.anchor_hash)
        with self._lock:
            known = self._announcements.setdefault(key, {})
            if announcement.model_commitment in known:
                return False
            if len(known) >= MAX_ANNOUNCEMENTS_PER_HEIGHT:
                raise SolutionRejected(
                    f"{MAX_ANNOUNCEMENTS_PER_HEIGHT} announcements already held for this anchor"
                )
            known[announcement.model_commitment] = announcement
            while len(self._announcements) > MAX_ANNOUNCED_HEIGHTS:
                self._announcements.popitem(last=False)
            return True

    def announcements(self, task_id: int, anchor_hash: bytes) -> List[SolutionAnnouncement]:
        with self._lock:
            return list(self._announcements.get(_height_key(task_id, anchor_hash), {}).values())

    # -- releases ----------------------------------------------------------------------
    def add_release(self, release: Release, task: Task) -> bool:
        """Store the poster's release for ``task``, anchored at the release's anchor."""
        if not task.is_open:
            raise SolutionRejected(f"release for task {release.task_id}, which is not open there")
        try:
            check_release(release, task, _anchor_of(task), CHAIN_ID)
        except ReleaseRefused as error:
            raise SolutionRejected(str(error)) from None
        if not self.blobs.has(release.test_set_digest):
            raise SolutionRejected(
                f"test set {encode_hex(release.test_set_digest)} must be uploaded before the release"
            )
        self._keep_release_blobs(release, task)  # before the next upload can expire them
        digest = self.blobs.put(release.encode())
        self.blobs.keep(digest)
        prefix_key = _RELEASE_KEY + digest[:RELEASE_DIGEST_PREFIX_SIZE]
        height_key = _RELEASE_FOR_KEY + _height_key(release.task_id, release.anchor_hash)
        if self._db.get(prefix_key) == digest:
            return False
        with self._db.atomic_batch() as batch:
            # Every release the poster signed is kept by digest, so a block citing any of
            # them verifies the same on every node (a poster that signs two releases for
            # one anchor must not split the network). The first one seen closes
            # announcements for the anchor.
            batch[prefix_key] = digest
            if height_key not in batch:
                batch[height_key] = digest
            batch[_RELEASED_TEST_SET_KEY + release.test_set_digest] = digest
            for commitment in release.admitted:
                batch[_ADMITTED_KEY + commitment] = digest
        return True

    def _keep_release_blobs(self, release: Release, task: Task) -> None:
        """Keep what a block answering `release` refers to (models revealed so far too)."""
        for kept in (release.test_set_digest, task.dataset_digest, task.model_spec):
            self.blobs.keep(kept)
        clear = clear_digest_of(self.blob(task.dataset_digest))  # an encrypted task's
        if clear is not None and self.blobs.has(clear):
            self.blobs.keep(clear)
        for commitment in release.admitted:
            model_digest = self._db.get(_MODEL_KEY + commitment)
            if model_digest is not None:  # revealed before this node saw the release
                self.blobs.keep(model_digest)

    def is_test_set_released(self, test_set_digest: bytes) -> bool:
        """Whether any task with this test-set commitment was released (the set is public)."""
        return self._db.get(_RELEASED_TEST_SET_KEY + bytes(test_set_digest)) is not None

    def _release_at(self, key: bytes) -> Optional[Release]:
        digest = self._db.get(key)
        if digest is None:
            return None
        blob = self.blob(digest)
        return Release.decode(blob) if blob is not None else None

    def release_for(self, task_id: int, anchor_hash: bytes) -> Optional[Release]:
        return self._release_at(_RELEASE_FOR_KEY + _height_key(task_id, anchor_hash))

    def release_for_prefix(self, prefix: bytes) -> Optional[Release]:
        return self._release_at(_RELEASE_KEY + bytes(prefix))

    # -- revealed models ---------------------------------------------------------------
    def reveal_model(self, model_blob: bytes, coinbase: bytes, anchor_hash: bytes) -> bytes:
        """Store a revealed model; returns its commitment (what the seal's mix_hash holds)."""
        commitment = commitment_for(model_blob, coinbase, anchor_hash)
        digest = self.blobs.put(model_blob)
        self._db[_MODEL_KEY + commitment] = digest
        if self.is_admitted(commitment):
            self.blobs.keep(digest)  # a stored release admits it: a block may cite it
        return commitment

    def is_admitted(self, commitment: bytes) -> bool:
        """Whether a release stored here admits this model commitment (a block may cite it)."""
        return self._db.get(_ADMITTED_KEY + bytes(commitment)) is not None

    def model_for(self, commitment: bytes) -> Optional[bytes]:
        digest = self._db.get(_MODEL_KEY + bytes(commitment))
        return self.blob(digest) if digest is not None else None
