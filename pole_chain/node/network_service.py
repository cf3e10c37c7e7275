"""The node's network service: one `Network`, the sink and view it uses, sync and publishing.

Composition (docs/NETWORK.md, "The node on the network"):
- `NodeChainView` answers peers (statuses, header and block ranges, blobs, block data);
- `GossipSink` takes peers' gossip in through the node's own admission and import;
- `PendingBlocks` holds gossiped PoLe blocks until their data is fetched, then imports them;
- the sink's `EarlyGossip` holds messages that overtook their anchor block; once the block is
  imported (from a peer, or a head of this node's own) they are taken in on their own thread
  (a release's blobs may take a while to fetch) and published by this node when accepted;
- `Synchronizer` catches up with leading peers and follows reorgs;
- the outbox publishes, off the caller's thread, what this node admitted on its own:
  transactions (RPC), blocks it sealed or mined, announcements, releases and admitted
  models (RPC), key requests and bundles its KeyBook stored from RPC, and pending blocks once imported (unless gossip relayed them on their header,
  node/early_relay.py). Gossip the node accepted is relayed by gossipsub itself.
- open tasks' datasets and model specs are fetched when a head names ones not held here,
  so a miner whose node is not the data node's finds them on its own node.
Publishing never blocks a node thread (they hold the node lock while they notify) and a
full outbox drops the oldest work rather than stalling block production.
"""
from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import rlp
from eth.abc import BlockAPI, SignedTransactionAPI

from miner.encrypted_tasks import KeyBundle, KeyRequest
from pole_chain.net import Network, NetworkConfig, NetworkError, Verdict
from pole_chain.node.admission import TransactionAdmission
from pole_chain.node.blob_store import BlobLimitExceeded, BlobStore
from pole_chain.node.block_data import BlockDataFetcher, PendingBlocks, lacks_block_data
from pole_chain.node.block_import import BlockImporter
from pole_chain.node.block_intake import BlockIntake, Outcome
from pole_chain.node.early_gossip import HeldMessage
from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.events import NodeEvents
from pole_chain.node.gossip_sink import GossipSink
from pole_chain.node.key_book import KeyBook
from pole_chain.node.locking import NodeLock
from pole_chain.node.model_gossip import encode_model_gossip
from pole_chain.node.peer_view import NodeChainView
from pole_chain.node.solution_book import SolutionBook
from pole_chain.node.sync import Synchronizer
from pole_chain.node.task_views import TaskViews
from pole_chain.node.withholding import BlobWithholding
from vm_hooks.chain import PoLeChain

log = logging.getLogger("pole.net")

#: Publications waiting at most; past it the oldest is dropped (peers sync what they miss).
OUTBOX_SIZE = 1024
#: Seconds before asking peers again for an open task's blob none of them had.
PREFETCH_RETRY = 2.0


@dataclass(frozen=True)
class NodeParts:
    """The node services the network service plugs into."""

    chain: PoLeChain
    reader: ChainReader
    lock: NodeLock
    events: NodeEvents
    importer: BlockImporter
    transactions: TransactionAdmission
    solutions: SolutionBook
    tasks: TaskViews
    withholding: BlobWithholding
    blobs: BlobStore
    key_book: KeyBook


class NetworkService:
    """Owns the node's Network and the threads that sync, fetch and publish for it."""

    def __init__(self, parts: NodeParts, config: NetworkConfig) -> None:
        self._parts = parts
        self.view = NodeChainView(parts.reader, parts.lock, parts.solutions, parts.withholding)
        self.intake = BlockIntake(
            parts.importer, parts.reader, parts.lock,
            lacks_data=functools.partial(lacks_block_data, parts.solutions),
        )
        self.sink = GossipSink(
            intake=self.intake, transactions=parts.transactions, solutions=parts.solutions,
            key_book=parts.key_book, tasks=parts.tasks, blobs=parts.blobs, lock=parts.lock,
            chain_id=parts.chain.chain_id,
        )
        self.network = Network(config, self.view, self.sink)
        fetcher = BlockDataFetcher(
            self.network, parts.solutions, parts.blobs, parts.tasks, parts.lock
        )
        self.pending = PendingBlocks(fetcher, self._pending_ready)
        self.sync = Synchronizer(
            self.network, self.view, self.intake, fetcher, parts.chain, parts.reader, parts.lock
        )
        self.sink.network = self.network
        self.sink.pending = self.pending
        self.sink.wake_sync = self.sync.wake
        self.sink.status_listener = self.sync.on_peer_status
        self.intake.on_imported = self._anchor_arrived
        self._outbox: queue.Queue[Callable[[], None] | None] = queue.Queue(OUTBOX_SIZE)
        self._early_box: queue.Queue[Callable[[], None] | None] = queue.Queue(OUTBOX_SIZE)
        self._prefetch_wanted = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Listen, dial the bootstrap peers, start sync, the pending queue and the outbox."""
        self.network.start()
        self._parts.events.subscribe_heads(self._on_new_heads)
        self._parts.events.subscribe_pending(self._on_pending_transaction)
        self._parts.key_book.subscribe(self._on_key_request, self._on_key_bundle)
        self.pending.start()
        self.sync.start()
        for name, target, args in (
            ("pole-outbox", self._run_queue, (self._outbox,)),
            ("pole-early", self._run_queue, (self._early_box,)),
            ("pole-prefetch", self._run_prefetch, ()),
        ):
            thread = threading.Thread(target=target, args=args, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._prefetch_wanted.set()
        self.sync.wake()

    def stop(self) -> None:
        """Stop every thread, then the network (idempotent)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._prefetch_wanted.set()
        self.sync.stop()
        self.pending.stop()
        _put_dropping_oldest(self._outbox, None)
        _put_dropping_oldest(self._early_box, None)
        for thread in self._threads:
            thread.join(timeout=10)
        self.network.stop()

    # -- what this node publishes --------------------------------------------------------

    def publish_announcement(self, encoded: bytes) -> None:
        """Gossip an announcement this node stored from its RPC."""
        self._send(lambda: self.network.publish_announcement(encoded))

    def publish_release(self, encoded: bytes) -> None:
        """Gossip a release this node stored from its RPC."""
        self._send(lambda: self.network.publish_release(encoded))

    def publish_block(self, rlp_block: bytes) -> None:
        """Gossip a block imported over this node's RPC that did not become its head (the
        heads it adopts are published as they come)."""
        self._send(lambda: self.network.publish_block(rlp_block))

    def publish_model(self, anchor_hash: bytes, miner: bytes, model: bytes) -> None:
        """Gossip a model revealed over this node's RPC that a release admits (a model too
        big for the topic is left to block-data fetches)."""
        encoded = encode_model_gossip(anchor_hash, miner, model)
        if encoded is not None:
            self._send(lambda: self.network.publish_model(encoded))

    def _on_key_request(self, request: KeyRequest) -> None:
        """Gossip a key request the key book stored from this node's RPC."""
        encoded = request.encode()
        self._send(lambda: self.network.publish_key_request(encoded))

    def _on_key_bundle(self, bundle: KeyBundle) -> None:
        """Gossip a key bundle the key book stored from this node's RPC."""
        encoded = bundle.encode()
        self._send(lambda: self.network.publish_key_bundle(encoded))

    def _on_new_heads(self, blocks: Sequence[BlockAPI]) -> None:
        self._prefetch_wanted.set()
        for block in blocks:
            self._anchor_arrived(block.hash)
            if not self.intake.came_from_network(block.hash):
                encoded = rlp.encode(block)
                self._send(lambda: self.network.publish_block(encoded))

    def _on_pending_transaction(self, transaction: SignedTransactionAPI) -> None:
        if not self.intake.receiving:
            encoded = transaction.encode()
            self._send(lambda: self.network.publish_transaction(encoded))

    def _pending_ready(self, rlp_block: bytes) -> None:
        """A pending block's data arrived: import it, and gossip it unless gossipsub relayed
        it already (node/early_relay.py)."""
        result = self.intake.take(rlp_block)
        if result.outcome is Outcome.IMPORTED:
            assert result.block is not None
            if not self.sink.early_relay.relayed(result.block):
                self._send(lambda: self.network.publish_block(rlp_block))
        elif result.outcome is not Outcome.KNOWN:
            log.info("pending block not imported: %s %s", result.outcome.value, result.reason)

    def _anchor_arrived(self, block_hash: bytes) -> None:
        """Take in the gossip that waited for this block (called under the node lock)."""
        for held in self.sink.early.arrived(block_hash):
            _put_dropping_oldest(self._early_box, lambda held=held: self._take_held(held))

    def _take_held(self, held: HeldMessage) -> None:
        if held.take(held.payload) is Verdict.ACCEPT:
            log.info("%s that arrived before its anchor block taken in", held.kind.value)
            self.network.publish(held.kind, held.payload)

    def _send(self, publish: Callable[[], None]) -> None:
        _put_dropping_oldest(self._outbox, publish)

    def _run_queue(self, box: queue.Queue[Callable[[], None] | None]) -> None:
        while True:
            work = box.get()
            if work is None:
                return
            try:
                work()
            except NetworkError as exc:
                log.info("publishing failed: %s", exc)
            except Exception:  # a bug in one publication must not stop the others
                log.exception("publishing failed")

    # -- blobs of open tasks -------------------------------------------------------------

    def _run_prefetch(self) -> None:
        while True:
            self._prefetch_wanted.wait()
            self._prefetch_wanted.clear()
            if self._stopping.is_set():
                return
            try:
                complete = self._prefetch_open_task_blobs()
            except Exception:
                log.exception("fetching open tasks' blobs failed")
                complete = False
            if not complete and not self._stopping.wait(PREFETCH_RETRY):
                self._prefetch_wanted.set()  # no new head may come while a task is open

    def _prefetch_open_task_blobs(self) -> bool:
        """Fetch the datasets and model specs open tasks name (test sets wait for release);
        True when all of them are held."""
        digests = self._parts.tasks.open_digests()
        complete = True
        for digest in sorted(digests.blobs - digests.test_sets):
            if self._stopping.is_set() or self._parts.blobs.has(digest):
                continue
            try:
                data = self.network.fetch_blob(digest)
                if data is not None:
                    self._parts.blobs.put(data)
                    continue
            except (NetworkError, BlobLimitExceeded) as exc:
                log.info("blob %s not fetched: %s", digest.hex(), exc)
            complete = False
        return complete


def _put_dropping_oldest(box: queue.Queue, item: object) -> None:
    while True:
        try:
            box.put_nowait(item)
            return
        except queue.Full:
            try:
                box.get_nowait()
            except queue.Empty:
                pass
