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
from dataclasses import dataclass

from eth.abc import BlockAPI
from eth.exceptions import HeaderNotFound

from miner.encrypted_tasks import clear_digest_of
from miner.messages import MessageError, Release, commitment_for
from pole_chain.net import Network, NetworkError
from pole_chain.node.blob_store import BlobLimitExceeded, BlobStore
from pole_chain.node.locking import NodeLock
from pole_chain.node.solution_book import SolutionBook, SolutionRejected
from pole_chain.node.task_views import TaskViews
from vm_hooks.seal import BlockKind, SealedHeader, SealError, read_seal
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
        sealed = pole_seal(block)
        if sealed is None:
            return True  # no data to fetch: import decides
        release, model = _held(self._solutions, sealed)
        try:
            if release is None or model is None:
                commitment = sealed.commitment
                fetched = self._network.fetch_block_data(
                    sealed.seal.release_digest_prefix, commitment,
                    _commitment_check(sealed.miner, commitment),
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


def pole_seal(block: BlockAPI) -> SealedHeader | None:
    """The seal of a PoLe block; None for any other block, or a seal that does not parse
    (import says why)."""
    try:
        sealed = read_seal(block.header)
    except SealError:
        return None
    return sealed if sealed.seal.kind is BlockKind.POLE else None


def lacks_block_data(solutions: SolutionBook, block: BlockAPI) -> bool:
    """Whether `block` is a PoLe block whose release or model `solutions` does not hold
    (its task's blobs are checked by the import itself)."""
    sealed = pole_seal(block)
    return sealed is not None and None in _held(solutions, sealed)


def _held(solutions: SolutionBook, sealed: SealedHeader) -> tuple[Release | None, bytes | None]:
    """The block's release and model as far as this node holds them."""
    return (solutions.release_for_prefix(sealed.seal.release_digest_prefix),
            solutions.model_for(sealed.commitment))


def _commitment_check(miner: bytes, commitment: bytes) -> Callable[[bytes, bytes], bool]:
    """Whether a peer's (release, model) is the one the header commits to."""

    def matches(release_bytes: bytes, model: bytes) -> bool:
        try:
            anchor = Release.decode(release_bytes).anchor_hash
        except MessageError:
            return False
        return commitment_for(model, miner, anchor) == commitment

    return matches


@dataclass
class _Pending:
    block: BlockAPI
    rlp_bytes: bytes
    deadline: float
    next_attempt: float  # monotonic: at once when added, RETRY_INTERVAL after each failure
    woken: bool = False  # data arrived during an attempt: the next one is due at once


class PendingBlocks:
    """Gossiped blocks waiting for their data, retried on one thread, then imported.

    A block is tried as soon as it arrives, and a block whose data was not found is tried
    again RETRY_INTERVAL later: one retry clock for the whole queue would make a block that
    arrives while others are being fetched or imported wait out the interval (a second per
    hop on the way to every node, seen in bench.propagation).
    """

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
        self._waiting: OrderedDict[bytes, _Pending] = OrderedDict()
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
            now = time.monotonic()
            self._waiting[block.hash] = _Pending(block, rlp_bytes, now + self._timeout, now)
            while len(self._waiting) > MAX_PENDING:
                self._waiting.popitem(last=False)
            self._changed.notify_all()

    def retry_now(self) -> None:
        """Data arrived by other means (a gossiped model): try every held block again now."""
        with self._changed:
            now = time.monotonic()
            for pending in self._waiting.values():
                pending.next_attempt = min(pending.next_attempt, now)
                pending.woken = True
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._waiting)

    def _run(self) -> None:
        while True:
            with self._changed:
                due = self._wait_for_due()
                if due is None:
                    return
            self._attempt(*due)

    def _wait_for_due(self) -> tuple[bytes, _Pending] | None:
        """The oldest block due for an attempt, once there is one; None once stopped."""
        while not self._stopped:
            now = time.monotonic()
            due = next(((h, p) for h, p in self._waiting.items() if p.next_attempt <= now), None)
            if due is not None:
                due[1].woken = False
                return due
            soonest = min((p.next_attempt for p in self._waiting.values()), default=None)
            self._changed.wait(None if soonest is None else soonest - now)
        return None

    def _attempt(self, block_hash: bytes, pending: _Pending) -> None:
        block = pending.block
        try:
            ready = self._fetcher.fetch_for(block)
        except Exception:  # a bug here must not stop the queue for every other block
            log.exception("fetching data for block #%d failed", block.number)
            ready = False
        expired = not ready and time.monotonic() > pending.deadline
        with self._changed:
            if ready or expired:
                self._waiting.pop(block_hash, None)
            else:
                pending.next_attempt = time.monotonic() + (0.0 if pending.woken else RETRY_INTERVAL)
        if ready:
            self._on_ready(pending.rlp_bytes)
        elif expired:
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
