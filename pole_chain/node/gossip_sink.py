"""Incoming gossip through the node's own admission paths, and the verdict for gossipsub.

Every message is taken in by the same service an RPC call would use (TransactionAdmission,
BlockImporter via BlockIntake, the SolutionBook for announcements, releases and models, the KeyBook
for key requests and bundles), so a peer can do nothing a local client could not. The
verdict decides relaying and blame:
- ACCEPT: taken in; gossipsub relays it. A PoLe block is relayed on its header's word when
  EarlyRelay admits it, and imported off the gossip path (the pending queue);
- IGNORE: not relayed, nobody blamed: a duplicate, a block whose parent is missing (sync
  starts), a PoLe block whose header alone does not earn relaying (node/early_relay.py:
  held pending, fetched, imported and published by this node once complete), a
  transaction the pool refuses by its own policy (nonce, price, pool full: views differ between nodes), a full key book, a bug in this
  node (logged), a model no release held here admits; an announcement, release, key
  request or bundle whose anchor block is not here yet is held (EarlyGossip) and taken
  in, then published by this node, once it is;
- REJECT: malformed or invalid by the rules (bad encoding, bad signature, invalid block, a
  key request or bundle naming a block that does not anchor its task, a bundle not signed
  by the task's poster): not relayed, and the sender is penalised. Which task a block
  anchors is fixed by the block itself, so that check gives the same answer on every branch.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from eth.exceptions import HeaderNotFound

from miner.encrypted_tasks import KeyBundle, KeyRequest
from miner.messages import MessageError, Release, SolutionAnnouncement
from miner.release_rules import ReleaseRefused, check_release
from pole_chain.net import ChainStatus, Kind, Network, NetworkError, Verdict
from pole_chain.node.admission import TransactionAdmission
from pole_chain.node.blob_store import BlobLimitExceeded, BlobStore
from pole_chain.node.block_data import PendingBlocks, fetch_release_blobs
from pole_chain.node.block_intake import BlockIntake, Outcome
from pole_chain.node.early_gossip import EarlyGossip, HeldMessage
from pole_chain.node.early_relay import EarlyRelay
from pole_chain.node.key_book import KeyBook, KeyBookFull, KeyRequestRejected
from pole_chain.node.locking import NodeClosed, NodeLock
from pole_chain.node.model_gossip import ModelGossipError, decode_model_gossip
from pole_chain.node.mempool import TransactionRejected
from pole_chain.node.solution_book import SolutionBook, SolutionRejected
from pole_chain.node.task_views import TaskViews
from vm_hooks.task import Task

log = logging.getLogger("pole.net")

_BLOCK_VERDICTS = {
    Outcome.IMPORTED: Verdict.ACCEPT,
    Outcome.KNOWN: Verdict.IGNORE,
    Outcome.UNKNOWN_PARENT: Verdict.IGNORE,
    Outcome.DATA_MISSING: Verdict.IGNORE,
    Outcome.DEFERRED: Verdict.IGNORE,
    Outcome.NOT_YET: Verdict.IGNORE,
    Outcome.INVALID: Verdict.REJECT,
    Outcome.NODE_BUG: Verdict.IGNORE,
}


class GossipSink:
    """The node's NodeSink: each call validates, takes the item in, and answers a Verdict."""

    def __init__(
        self,
        *,
        intake: BlockIntake,
        transactions: TransactionAdmission,
        solutions: SolutionBook,
        key_book: KeyBook,
        tasks: TaskViews,
        blobs: BlobStore,
        lock: NodeLock,
        chain_id: int,
    ) -> None:
        self._intake = intake
        self._transactions = transactions
        self._solutions = solutions
        self._key_book = key_book
        self._chain_id = chain_id
        self._tasks = tasks
        self._blobs = blobs
        self._lock = lock
        self.early = EarlyGossip()
        self.early_relay = EarlyRelay(solutions)
        # wired by NetworkService once the Network and the queues exist
        self.network: Network | None = None
        self.pending: PendingBlocks | None = None
        self.wake_sync: Callable[[], None] = lambda: None
        self.status_listener: Callable[[str, ChainStatus], None] = lambda peer, status: None

    def on_transaction(self, raw: bytes) -> Verdict:
        try:
            self._transactions.decode(raw)
        except TransactionRejected:
            return Verdict.REJECT
        try:
            with self._intake.from_network():
                self._transactions.submit(raw)
        except (TransactionRejected, NodeClosed):
            return Verdict.IGNORE
        return Verdict.ACCEPT

    def on_block(self, rlp_block: bytes) -> Verdict:
        result = self._intake.take(rlp_block, defer_pole=True)
        if result.outcome is Outcome.UNKNOWN_PARENT:
            self.wake_sync()
        elif (result.outcome in (Outcome.DATA_MISSING, Outcome.DEFERRED)
                and self.pending is not None):
            assert result.block is not None
            self.pending.add(result.block, rlp_block)
            if self.early_relay.admit(result.block):
                return Verdict.ACCEPT
        elif result.outcome is Outcome.INVALID:
            log.info("invalid block from gossip: %s", result.reason)
        elif result.outcome is Outcome.NODE_BUG:
            log.error("a gossiped block hit a node bug (the sender is not blamed): %s",
                      result.reason)
        return _BLOCK_VERDICTS[result.outcome]

    def on_announcement(self, message: bytes) -> Verdict:
        try:
            announcement = SolutionAnnouncement.decode(message)
        except MessageError:
            return Verdict.REJECT
        held = HeldMessage(Kind.ANNOUNCEMENT, message, self.on_announcement)
        return self._store(self._solutions.add_announcement, announcement, held)

    def on_release(self, message: bytes) -> Verdict:
        try:
            release = Release.decode(message)
        except MessageError:
            return Verdict.REJECT
        self._fetch_release_blobs(release)  # before the store takes the lock
        held = HeldMessage(Kind.RELEASE, message, self.on_release)
        verdict = self._store(self._solutions.add_release, release, held)
        if verdict is Verdict.ACCEPT:
            self._retry_pending()
        return verdict

    def on_key_request(self, message: bytes) -> Verdict:
        try:  # the signature first: a forgery is rejected whatever block it names
            request = KeyRequest.decode(message).verify(self._chain_id)
        except MessageError:
            return Verdict.REJECT
        task = self._keyed_task(request, HeldMessage(Kind.KEY_REQUEST, message, self.on_key_request))
        if isinstance(task, Verdict):
            return task
        return self._store_keys(self._key_book.add_request, request, task)

    def on_key_bundle(self, message: bytes) -> Verdict:
        try:
            bundle = KeyBundle.decode(message)
        except MessageError:
            return Verdict.REJECT
        task = self._keyed_task(bundle, HeldMessage(Kind.KEY_BUNDLE, message, self.on_key_bundle))
        if isinstance(task, Verdict):
            return task
        if not self._tasks.bonded_at(bundle.anchor_hash, bundle.miner):
            return Verdict.IGNORE  # nobody admits an unbonded miner: not worth storing
        return self._store_keys(self._key_book.add_bundle, bundle, task)  # verifies it

    def on_model(self, message: bytes) -> Verdict:
        try:
            anchor, miner, model, commitment = decode_model_gossip(message)
        except ModelGossipError:
            return Verdict.REJECT
        if not self._solutions.is_admitted(commitment):
            return Verdict.IGNORE  # no release held here names it (see model_gossip)
        try:
            with self._lock:
                if self._solutions.model_for(commitment) is not None:
                    return Verdict.IGNORE
                self._solutions.reveal_model(model, miner, anchor)
        except BlobLimitExceeded:
            return Verdict.IGNORE
        self._retry_pending()
        return Verdict.ACCEPT

    def _retry_pending(self) -> None:
        """A release or model came: a block relayed ahead of it may be waiting for it."""
        if self.pending is not None:
            self.pending.retry_now()

    def on_peer_status(self, peer_id: str, status: ChainStatus) -> None:
        self.status_listener(peer_id, status)

    def _keyed_task(self, message: KeyRequest | KeyBundle, held: HeldMessage) -> Task | Verdict:
        """The task a key message's anchor anchors, or the verdict when there is none."""
        try:
            with self._lock:
                task = self._tasks.anchored_at(message.anchor_hash)
        except HeaderNotFound:
            self.early.hold(message.anchor_hash, held)
            return Verdict.IGNORE  # its anchor block is not here yet
        if task is None or task.task_id != message.task_id:
            return Verdict.REJECT  # a block this node holds, anchoring no such task
        return task

    def _store_keys(self, store: Callable[..., bool], message: Any, task: Task) -> Verdict:
        try:
            stored = store(message, task, self._chain_id, from_peer=True)
        except KeyBookFull:
            return Verdict.IGNORE
        except (KeyRequestRejected, MessageError):  # a bad signature, not the poster's
            return Verdict.REJECT
        return Verdict.ACCEPT if stored else Verdict.IGNORE

    def _store(self, store: Callable[[Any, Task], bool], message: Any, held: HeldMessage) -> Verdict:
        """Check a message against the task its anchor names and store it, as the RPC does."""
        try:
            with self._lock:
                task = self._tasks.anchored_at(message.anchor_hash)
                if task is None or task.task_id != message.task_id:
                    return Verdict.IGNORE  # another branch's task, or stale
                return Verdict.ACCEPT if store(message, task) else Verdict.IGNORE
        except HeaderNotFound:
            return self._hold(message, held)
        except MessageError:  # a bad signature, fields the store checks: never relayed
            return Verdict.REJECT
        except (SolutionRejected, BlobLimitExceeded):
            return Verdict.IGNORE  # a closed height, a full store

    def _hold(self, message: SolutionAnnouncement | Release, held: HeldMessage) -> Verdict:
        """Keep a message whose anchor is not here yet, once its signature holds (the store
        checks it when the anchor comes; a forgery is rejected now, never held)."""
        try:
            message.verify(self._chain_id)
        except MessageError:
            return Verdict.REJECT
        self.early.hold(message.anchor_hash, held)
        return Verdict.IGNORE

    def _fetch_release_blobs(self, release: Release) -> None:
        """What a release makes public (its test set; an encrypted task's clear training set)
        is needed to check the PoLe blocks that follow: fetched as soon as the release is."""
        if self.network is None:
            return
        try:
            task = self._tasks.anchored_at(release.anchor_hash)
            if task is None or task.anchor is None:
                return
            check_release(release, task, task.anchor.hash, self._chain_id)  # the poster's own
            fetch_release_blobs(self.network, self._blobs, release, task)
        except (HeaderNotFound, ReleaseRefused):
            return  # the store below ignores or rejects it
        except (NetworkError, BlobLimitExceeded) as exc:
            log.info("blobs of a release not fetched yet: %s", exc)
