"""The node: one chain database and the small services that share it.

`Node` opens the data directory and composes the services the JSON-RPC layer calls
(docs/ARCHITECTURE.md, "Node"); it owns no HTTP and no rule of its own:

- `reader` (ChainReader): headers, blocks, receipts and states, read-only;
- `transactions` (TransactionAdmission): raw transactions into the mempool, automine;
- `production` (BlockProducer): dev blocks, and what each new head does to the pool;
- `dev_controls` (DevControls) with `clock` (DevClock): evm_mine, snapshots, time travel;
- `sealing` (PoLeSealer): a miner's seal becomes an unsigned block, its seal checked;
- `miners` (BackgroundMiners): interval mining (dev `block_time`) and idle mining;
- `importer` (BlockImporter): blocks built elsewhere;
- `tasks` (TaskViews): the registry's tasks at the head;
- `withholding` (BlobWithholding): test sets not served before their release;
- `blobs`, `solutions`, `mempool`: the stores;
- `network` (NetworkService, only with a NetworkConfig): peers, gossip, sync, data fetch.

Every chain write happens under `node.lock` (one re-entrant lock, shared by all services).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from eth.constants import ZERO_ADDRESS
from eth_account.signers.local import LocalAccount
from eth_typing import Address, Hash32
from eth_utils import encode_hex, to_canonical_address, to_checksum_address

from miner.messages import Release, SolutionAnnouncement
from miner.seal_verifier import ModelSealVerifier
from pole_chain.chain.database import open_database
from pole_chain.chain.opening import open_chain
from pole_chain.node.admission import TransactionAdmission
from pole_chain.node.background_miners import BackgroundMiners
from pole_chain.node.blob_store import DEFAULT_MAX_TOTAL_SIZE, DEFAULT_UNKEPT_LIFETIME, BlobStore
from pole_chain.node.block_import import BlockImporter, BlockRejected
from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.dev_clock import DevClock
from pole_chain.node.dev_controls import DevControls, DevOnly
from pole_chain.node.events import NodeEvents
from pole_chain.node.key_book import KeyBook
from pole_chain.node.locking import NodeLock
from pole_chain.node.mempool import Mempool, TransactionRejected
from pole_chain.node.production import BlockProducer
from pole_chain.node.sealing import BuiltBlock, PoLeSealer, SealRequest
from pole_chain.node.solution_book import SolutionBook
from pole_chain.node.task_views import TaskViews
from pole_chain.node.withholding import BlobWithholding
from pole_chain.net import NetworkConfig, NetworkError
from pole_chain.node.network_service import NetworkService, NodeParts
from vm_hooks.genesis import dev_accounts
from vm_hooks.task import Task

__all__ = ["BlockRejected", "BuiltBlock", "DevOnly", "Node", "SealRequest", "TransactionRejected"]


class Node:
    """A PoLe node over one data directory (or memory when `datadir` is None)."""

    def __init__(
        self,
        datadir: Path | str | None,
        *,
        dev: bool,
        block_time: float | None = None,
        mine_idle: bool = False,
        coinbase: Address | str | None = None,
        verifier: Any = None,
        blob_budget: int = DEFAULT_MAX_TOTAL_SIZE,
        blob_lifetime: float = DEFAULT_UNKEPT_LIFETIME,
        network: NetworkConfig | None = None,
    ) -> None:
        _check_modes(dev=dev, block_time=block_time, mine_idle=mine_idle)
        self.datadir = Path(datadir).expanduser() if datadir is not None else None
        self.dev = dev
        self.coinbase = Address(to_canonical_address(coinbase)) if coinbase else ZERO_ADDRESS
        self.lock = NodeLock()
        self._db = open_database(self.datadir)
        self.blobs = BlobStore(
            self.datadir / "blobs" if self.datadir else None,
            max_total_size=blob_budget,
            unkept_lifetime=blob_lifetime,
        )
        self.solutions = SolutionBook(self._db, self.blobs)
        self.key_book = KeyBook()  # encrypted tasks' key requests and bundles
        try:
            self.chain = open_chain(
                self._db, dev=dev, verifier=verifier or ModelSealVerifier(self.solutions)
            )
        except BaseException:
            getattr(self._db, "close", lambda: None)()
            raise
        self.chain_id: int = self.chain.chain_id
        keys: list[LocalAccount] = dev_accounts() if dev else []
        self.accounts: list[str] = [to_checksum_address(a.address) for a in keys]
        self._compose(keys, block_time=block_time, mine_idle=mine_idle)
        self.network = self._network_service(network) if network is not None else None

    def _network_service(self, config: NetworkConfig) -> NetworkService:
        """The network over these services; the peer key lives in the datadir (if any)."""
        config = dataclasses.replace(
            config, datadir=self.datadir, max_blob_size=self.blobs.max_size
        )
        return NetworkService(
            NodeParts(
                chain=self.chain, reader=self.reader, lock=self.lock, events=self.events,
                importer=self.importer, transactions=self.transactions,
                solutions=self.solutions, tasks=self.tasks, withholding=self.withholding,
                blobs=self.blobs, key_book=self.key_book,
            ),
            config,
        )

    def _compose(
        self, keys: list[LocalAccount], *, block_time: float | None, mine_idle: bool
    ) -> None:
        """Build the services over the opened chain (each gets only what it uses)."""
        chain, lock, dev = self.chain, self.lock, self.dev
        self.reader = reader = ChainReader(chain)
        self.mempool = Mempool(self.chain_id)
        self.events = NodeEvents()
        self.clock = DevClock()
        self.production = producer = BlockProducer(
            chain, reader, self.mempool, self.clock, self.events,
            coinbase=self.coinbase, automine=dev and block_time is None,
        )
        signers = {Address(to_canonical_address(a.address)): a for a in keys}
        self.transactions = TransactionAdmission(
            chain, reader, self.mempool, lock, self.events, producer, signers
        )
        self.dev_controls = DevControls(
            chain, reader, self.mempool, lock, self.clock, producer, dev=dev
        )
        self.sealing = PoLeSealer(chain, reader, lock, self.clock, producer, dev=dev)
        self.importer = BlockImporter(chain, reader, lock, producer, dev=dev)
        self.miners = BackgroundMiners(
            chain, reader, lock, producer, self.events,
            coinbase=self.coinbase, block_time=block_time, mine_idle=mine_idle,
        )
        self.tasks = TaskViews(reader, lock)
        self.withholding = BlobWithholding(self.tasks, self.solutions)
        self.blobs.still_needed = self.tasks.names_blob
        self.events.subscribe_heads(lambda blocks: self.blobs.expire())

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start background block production (interval mining, idle mining), if any."""
        if self.network is not None:
            self.network.start()
        self.miners.start()

    def close(self) -> None:
        """Stop background mining and close the database (idempotent)."""
        if self.network is not None:
            self.network.stop()
        self.miners.stop()
        with self.lock:
            if self.lock.closed:
                return
            self.lock.closed = True
            close = getattr(self._db, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what comes from outside: transactions and blocks -------------------------------

    def submit_raw_transaction(self, raw: bytes) -> Hash32:
        """Admit a signed transaction (TransactionAdmission.submit)."""
        return self.transactions.submit(raw)

    def import_block(self, rlp_bytes: bytes) -> Hash32:
        """Validate and import an RLP block built elsewhere (BlockImporter.import_block).

        The network publishes new heads; a block submitted here that did not become the head
        (a PoLe sibling that loses fork choice on this node) is gossiped too, so every node
        sees and checks every sealed solution, not only the ones that won where they landed.
        """
        block_hash = self.importer.import_block(rlp_bytes)
        if self.network is not None:
            with self.lock:
                canonical = self.reader.is_canonical(self.reader.header(block_hash))
            if not canonical:
                self.network.publish_block(rlp_bytes)
        return block_hash

    def build_pole_block(self, seal_request: SealRequest) -> BuiltBlock:
        """The unsigned PoLe block for a miner's seal (PoLeSealer.build); the miner signs it
        and imports it with `import_block`."""
        return self.sealing.build(seal_request)

    def add_announcement(self, announcement: SolutionAnnouncement, task: Task) -> bool:
        """Store a verified announcement (SolutionBook) and gossip it if it was new."""
        stored = self.solutions.add_announcement(announcement, task)
        if stored and self.network is not None:
            self.network.publish_announcement(announcement.encode())
        return stored

    def reveal_model(self, model: bytes, coinbase: bytes, anchor_hash: bytes) -> bytes:
        """Store a revealed model (SolutionBook); gossip it once a release here admits it,
        so peers hold it before the block that cites it arrives. Returns its commitment."""
        commitment = self.solutions.reveal_model(model, coinbase, anchor_hash)
        if self.network is not None and self.solutions.is_admitted(commitment):
            self.network.publish_model(anchor_hash, coinbase, model)
        return commitment

    def add_release(self, release: Release, task: Task) -> bool:
        """Store the poster's release (SolutionBook) and gossip it if it was new."""
        stored = self.solutions.add_release(release, task)
        if stored and self.network is not None:
            self.network.publish_release(release.encode())
        return stored

    # -- modes and status --------------------------------------------------------------

    def peer_count(self) -> int:
        """Connected peers (0 without a network)."""
        if self.network is None:
            return 0
        try:
            return self.network.network.peer_count()
        except NetworkError:
            return 0

    @property
    def automine(self) -> bool:
        return self.production.automine

    @property
    def block_time(self) -> float | None:
        return self.miners.block_time

    @property
    def mine_idle(self) -> bool:
        return self.miners.mine_idle

    def status(self) -> dict[str, Any]:
        """What pole_nodeStatus reports: head, chain id, modes, pool and store sizes."""
        with self.lock:
            head = self.reader.head()
            return {
                "head_number": head.block_number,
                "head_hash": encode_hex(head.hash),
                "head_timestamp": head.timestamp,
                "chain_id": self.chain_id,
                "dev": self.dev,
                "automine": self.automine,
                "block_time": self.block_time,
                "mine_idle": self.mine_idle,
                "peers": self.peer_count(),
                "mempool_size": len(self.mempool),
                "blob_bytes": self.blobs.total_size,
                # gossip waiting on this node: blocks for their data, messages for their anchor
                "pending_blocks": len(self.network.pending) if self.network else 0,
                "early_gossip": len(self.network.sink.early) if self.network else 0,
                "datadir": str(self.datadir) if self.datadir else None,
            }


def _check_modes(*, dev: bool, block_time: float | None, mine_idle: bool) -> None:
    if block_time is not None and not dev:
        raise ValueError("block_time is a dev-node option (use it with dev=True)")
    if block_time is not None and block_time <= 0:
        raise ValueError(f"block_time must be positive, got {block_time}")
    if mine_idle and dev:
        raise ValueError("mine_idle is for non-dev nodes; a dev node mines on demand")
