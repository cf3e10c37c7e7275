"""Data availability: the release, model and blobs a PoLe block needs, fetched from peers.

A PoLe block is checked against its release (named by a digest prefix), its model (named by
a commitment), the task's training set, model spec and test set. A node that did not see
the release or the model reveal (it joined later, or the miner's node is elsewhere) cannot
verify the block yet: that is not a reason to reject it, but to fetch what is missing.
`BlockDataFetcher` asks peers for the release and model (`/pole/blockdata/1`, checked
against the header) and for each blob by digest, and stores them through the solution book,
which keeps them (so this node serves them in turn: every full node holds the data of the
blocks it accepted). `PendingBlocks` holds gossiped blocks while that happens, off the
gossip path, and imports them once their data is here, or drops them after a timeout.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from eth.abc import BlockAPI
from eth.exceptions import HeaderNotFound

from miner.encrypted_tasks import clear_digest_of
from miner.messages import MessageError, Release, commitment_for
from pole_chain.net import Network, NetworkError
from pole_chain.node.blob_store import BlobLimitExceeded, BlobStore
from pole_chain.node.locking import NodeLock
from pole_chain.node.solution_book import SolutionBook, SolutionRejected
from pole_chain.node.task_views import TaskViews
from vm_hooks.seal import BlockKind, SealError, read_seal
from vm_hooks.task import Task

log = logging.getLogger("pole.net")

#: Seconds a gossiped block may wait for its data before it is dropped (sync retries later).
PENDING_TIMEOUT = 60.0
#: Seconds between two fetch attempts for one pending block.
RETRY_INTERVAL = 1.0
#: Blocks held pending at most (a bound on what peers can make this node hold).
MAX_PENDING = 64


class BlockDataFetcher:
    """Fetches and stores what a PoLe block names and this node lacks."""

    def __init__(
        self,
        network: Network,
        solutions: SolutionBook,
        blobs: BlobStore,
        tasks: TaskViews,
        lock: NodeLock,
    ) -> None:
        self._network = network
        self._solutions = solutions
        self._blobs = blobs
        self._tasks = tasks
        self._lock = lock

    def fetch_for(self, block: BlockAPI) -> bool:
        """Make the block's data local; True when all of it is here (not a validity verdict)."""
        try:
            sealed = read_seal(block.header)
        except SealError:
            return False  # malformed: import will say invalid
        if sealed.seal.kind is not BlockKind.POLE:
            return True
        prefix, commitment = sealed.seal.release_digest_prefix, sealed.commitment
        release = self._solutions.release_for_prefix(prefix)
        model = self._solutions.model_for(commitment)
        try:
            if release is None or model is None:
                fetched = self._network.fetch_block_data(
                    prefix, commitment, _commitment_check(sealed.miner, commitment)
                )
                if fetched is None:
                    return False
                release, model = Release.decode(fetched[0]), fetched[1]
            return self._store(release, model, sealed.miner)
        except (NetworkError, MessageError, SolutionRejected, BlobLimitExceeded) as exc:
            log.info("data for block #%d not stored yet: %s", block.number, exc)
            return False

    def _store(self, release: Release, model: bytes, miner: bytes) -> bool:
        """Fetch the task's blobs, then store the release and the model (kept)."""
        try:
            task = self._tasks.anchored_at(release.anchor_hash)
        except HeaderNotFound:
            return False
        if task is None:
            return False
        if not fetch_release_blobs(self._network, self._blobs, release, task):
            return False
        with self._lock:
            self._solutions.add_release(release, task)
            self._solutions.reveal_model(model, miner, release.anchor_hash)
        return True


def _commitment_check(miner: bytes, commitment: bytes) -> Callable[[bytes, bytes], bool]:
    """Whether a peer's (release, model) is the one the header commits to."""

    def matches(release_bytes: bytes, model: bytes) -> bool:
        try:
            anchor = Release.decode(release_bytes).anchor_hash
        except MessageError:
            return False
        return commitment_for(model, miner, anchor) == commitment

    return matches


class PendingBlocks:
    """Gossiped blocks waiting for their data, retried on one thread, then imported."""

    def __init__(
        self,
        fetcher: BlockDataFetcher,
        on_ready: Callable[[bytes], None],
        *,
        timeout: float = PENDING_TIMEOUT,
    ) -> None:
        self._fetcher = fetcher
        self._on_ready = on_ready
        self._timeout = timeout
        self._waiting: OrderedDict[bytes, tuple[BlockAPI, bytes, float]] = OrderedDict()
        self._changed = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="pole-pending", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def add(self, block: BlockAPI, rlp_bytes: bytes) -> None:
        """Hold a block whose data is missing (the oldest is dropped past MAX_PENDING)."""
        with self._changed:
            if block.hash in self._waiting:
                return
            self._waiting[block.hash] = (block, rlp_bytes, time.monotonic() + self._timeout)
            while len(self._waiting) > MAX_PENDING:
                self._waiting.popitem(last=False)
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._waiting)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._stopped or bool(self._waiting))
                if self._stopped:
                    return
                batch = list(self._waiting.items())
            for block_hash, (block, rlp_bytes, deadline) in batch:
                self._attempt(block_hash, block, rlp_bytes, deadline)
            with self._changed:
                if self._waiting and not self._stopped:
                    self._changed.wait(RETRY_INTERVAL)

    def _attempt(self, block_hash: bytes, block: BlockAPI, rlp_bytes: bytes, deadline: float) -> None:
        try:
            ready = self._fetcher.fetch_for(block)
        except Exception:  # a bug here must not stop the queue for every other block
            log.exception("fetching data for block #%d failed", block.number)
            ready = False
        if ready or time.monotonic() > deadline:
            with self._changed:
                self._waiting.pop(block_hash, None)
        if ready:
            self._on_ready(rlp_bytes)
        elif time.monotonic() > deadline:
            log.warning("dropped block #%d: its data did not arrive in %.0f s",
                        block.number, self._timeout)


def fetch_release_blobs(network: Network, blobs: BlobStore, release: Release, task: Task) -> bool:
    """Make local every blob the seal verifier needs once `release` of `task` is out: the test
    set it makes public, the task's training set and model spec, and an encrypted task's clear
    training set (named inside the encrypted one, so fetched after it). True when all are
    here; NetworkError or BlobLimitExceeded pass through."""
    for digest in (release.test_set_digest, task.dataset_digest, task.model_spec):
        if not _fetched(network, blobs, digest):
            return False
    clear = clear_digest_of(blobs.get(task.dataset_digest))
    return clear is None or _fetched(network, blobs, clear)


def _fetched(network: Network, blobs: BlobStore, digest: bytes) -> bool:
    if blobs.has(digest):
        return True
    data = network.fetch_blob(digest)
    if data is None:
        return False
    blobs.put(data)
    return True
