"""The node: one chain database, its mempool, block production, and the dev-node controls.

`Node` is the facade the JSON-RPC layer calls (docs/ARCHITECTURE.md, "Node facade"). It owns
no HTTP; the RPC handlers read `node.chain` under `node.lock` and call the methods below.

Block production on a dev node (`dev=True`):
- automine (no block time): `submit_raw_transaction` builds and imports a block before it
  returns, so the receipt exists when eth_sendRawTransaction answers;
- interval mining (`block_time` seconds): a background thread seals a block (empty or not)
  every interval.
A non-dev node imports blocks from outside (`import_block`) and, with `mine_idle`, seals
proof-of-work idle blocks in the background.

Every write to the chain happens under `node.lock`; LevelDB writes each block in one batch, so
a committed block survives a kill -9 and a restart resumes at the stored head.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rlp
from eth.constants import ZERO_ADDRESS
from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI, StateAPI
from eth.exceptions import HeaderNotFound
from eth_account.signers.local import LocalAccount
from eth_typing import Address, Hash32
from eth_utils import ValidationError, to_canonical_address, to_checksum_address

from pole_chain.node.blob_store import BlobStore
from pole_chain.chain.block_production import (
    BlockProductionStopped,
    ProducedBlock,
    build_idle_block,
    earliest_idle_timestamp,
    persist,
    produce_dev_block,
    produce_pole_block,
    solve_idle_block,
)
from pole_chain.chain.opening import open_chain
from pole_chain.chain.database import open_database
from vm_hooks.genesis import dev_accounts
from pole_chain.node.mempool import MAX_TRANSACTION_SIZE, Mempool, TransactionRejected
from miner.seal_verifier import ModelSealVerifier
from pole_chain.node.solution_book import SolutionBook
from vm_hooks.registry_calls import TASK_SETTLED, Task, best_open_task, read_task
from vm_hooks.registry_calls import view as registry_view

log = logging.getLogger("pole.node")

#: Seconds a block from outside may be ahead of this node's clock.
MAX_FUTURE_DRIFT = 15
#: automine: blocks built per submission at most (more only if the gas limit splits them).
MAX_AUTOMINE_BLOCKS = 16

__all__ = ["BlockRejected", "Node", "SealRequest", "TransactionRejected"]


class BlockRejected(Exception):
    """A block from outside the node failed to decode or to validate; the message says why."""


class DevOnly(RuntimeError):
    """A dev-node control (snapshots, time travel, manual mining) called on a non-dev node."""


@dataclass(frozen=True)
class Snapshot:
    head_hash: Hash32
    time_offset: int
    time_floor: int
    next_timestamp: int | None
    pending: tuple[SignedTransactionAPI, ...]


@dataclass(frozen=True)
class SealRequest:
    """What a miner supplies to seal a PoLe block (see block_production.produce_pole_block)."""

    coinbase: Address
    task_id: int
    model_commitment: bytes
    train_bps: int
    test_bps: int
    release_digest: bytes
    parent_hash: Hash32 | None = None  # None: the current head


HeadListener = Callable[[Sequence[BlockAPI]], None]
PendingListener = Callable[[SignedTransactionAPI], None]


@dataclass
class _Listeners:
    heads: list[HeadListener] = field(default_factory=list)
    pending: list[PendingListener] = field(default_factory=list)


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
    ) -> None:
        if block_time is not None and not dev:
            raise ValueError("block_time is a dev-node option (use it with dev=True)")
        if block_time is not None and block_time <= 0:
            raise ValueError(f"block_time must be positive, got {block_time}")
        if mine_idle and dev:
            raise ValueError("mine_idle is for non-dev nodes; a dev node mines on demand")
        self.datadir = Path(datadir).expanduser() if datadir is not None else None
        self.dev = dev
        self.block_time = block_time
        self.mine_idle = mine_idle
        self.automine = dev and block_time is None
        self.coinbase = Address(to_canonical_address(coinbase)) if coinbase else ZERO_ADDRESS
        self.lock = threading.RLock()

        self._db = open_database(self.datadir)
        self.blobs = BlobStore(self.datadir / "blobs" if self.datadir else None)
        self.solutions = SolutionBook(self._db, self.blobs)
        try:
            self.chain = open_chain(
                self._db, dev=dev, verifier=verifier or ModelSealVerifier(self.solutions)
            )
        except BaseException:
            getattr(self._db, "close", lambda: None)()
            raise
        self.chain_id: int = self.chain.chain_id
        self.mempool = Mempool(self.chain_id)

        keys: list[LocalAccount] = dev_accounts() if dev else []
        self._signers = {Address(to_canonical_address(a.address)): a for a in keys}
        self.accounts: list[str] = [to_checksum_address(a.address) for a in keys]

        self._child_template: tuple[bytes, BlockHeaderAPI] | None = None
        self._test_sets_at: tuple[bytes, dict[bytes, int]] | None = None
        self._time_offset = 0
        self._next_timestamp: int | None = None
        self._time_floor = 0  # evm_increaseTime: at least this far past the head it was called on
        self._snapshots: dict[int, Snapshot] = {}
        self._snapshot_ids = itertools.count(1)
        self._listeners = _Listeners()
        self._stop = threading.Event()
        self._head_moved = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start background block production (interval mining, idle mining), if any."""
        if self.block_time is not None:
            self._spawn("pole-interval-miner", self._run_interval_miner)
        if self.mine_idle:
            self._spawn("pole-idle-miner", self._run_idle_miner)

    def close(self) -> None:
        """Stop background mining and close the database (idempotent)."""
        self._stop.set()
        self._head_moved.set()
        for thread in self._threads:
            thread.join(timeout=10)
        with self.lock:
            if self._closed:
                return
            self._closed = True
            close = getattr(self._db, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- chain reading helpers (callers hold node.lock) --------------------------------

    def head(self) -> BlockHeaderAPI:
        return self.chain.get_canonical_head()

    def state_at(self, header: BlockHeaderAPI) -> StateAPI:
        """The state after `header` (read-only by convention: never persisted)."""
        return self.chain.get_vm(header).state

    def child_header(self, parent: BlockHeaderAPI | None = None) -> BlockHeaderAPI:
        """A template of the next header on `parent` (gas limit, base fee, blob fee).

        Building one costs about half a millisecond and the mempool, block building and
        RPC fee answers each want it for the same parent, so the latest one is kept.
        """
        parent = parent or self.head()
        cached = self._child_template
        if cached is None or cached[0] != parent.hash:
            cached = (parent.hash, self.chain.create_header_from_parent(parent))
            self._child_template = cached
        return cached[1]

    def next_base_fee(self, parent: BlockHeaderAPI | None = None) -> int:
        return getattr(self.child_header(parent), "base_fee_per_gas", 0) or 0

    def next_timestamp(self, parent: BlockHeaderAPI | None = None) -> int:
        """The timestamp the next dev block on `parent` would get (no side effect)."""
        parent = parent or self.head()
        if self._next_timestamp is not None:
            return self._next_timestamp
        return max(parent.timestamp + 1, int(time.time()) + self._time_offset, self._time_floor)

    # -- listeners ---------------------------------------------------------------------

    def subscribe_heads(self, listener: HeadListener) -> None:
        """`listener(blocks)` after each head change, with the newly canonical blocks."""
        self._listeners.heads.append(listener)

    def subscribe_pending(self, listener: PendingListener) -> None:
        """`listener(tx)` for every transaction admitted to the mempool."""
        self._listeners.pending.append(listener)

    def _notify(self, listeners: Sequence[Callable[[Any], None]], payload: Any) -> None:
        for listener in listeners:
            try:
                listener(payload)
            except Exception:
                log.exception("listener %r failed", listener)

    # -- transactions ------------------------------------------------------------------

    def decode_transaction(self, raw: bytes) -> SignedTransactionAPI:
        if len(raw) > MAX_TRANSACTION_SIZE:
            raise TransactionRejected(
                f"oversized data: transaction size {len(raw)}, limit {MAX_TRANSACTION_SIZE}"
            )
        if not raw:
            raise TransactionRejected("empty transaction")
        builder = self.chain.get_vm_class_for_block_number(
            self.head().block_number + 1
        ).get_transaction_builder()
        try:
            return builder.decode(bytes(raw))
        except Exception as exc:  # rlp and py-evm raise many types for bad encodings
            raise TransactionRejected(f"invalid transaction encoding: {exc}") from exc

    def submit_raw_transaction(self, raw: bytes) -> bytes:
        """Admit a signed transaction; on an automining dev node, also mine it.

        Returns the transaction hash. Raises TransactionRejected with the reason.
        """
        with self.lock:
            self._check_open()
            tx = self.decode_transaction(raw)
            head = self.head()
            self.mempool.add(
                tx,
                self.state_at(head),
                block_gas_limit=self.child_header(head).gas_limit,
                base_fee=self.next_base_fee(head),
            )
            self._notify(self._listeners.pending, tx)
            if self.automine:
                self._automine(tx)
            return tx.hash

    def _automine(self, submitted: SignedTransactionAPI) -> None:
        for _ in range(MAX_AUTOMINE_BLOCKS):
            head = self.head()
            if not self.mempool.executable(self.state_at(head), self.next_base_fee(head)):
                return
            produced = self._produce_dev_block()
            for tx, reason in produced.rejected:
                if tx.hash == submitted.hash:
                    raise TransactionRejected(reason)
            if not produced.included:
                return

    def pending_transactions(self) -> list[SignedTransactionAPI]:
        return self.mempool.transactions()

    def pending_nonce(self, address: Address) -> int:
        """The next nonce for `address` counting its consecutive pooled transactions."""
        with self.lock:
            account_nonce = self.state_at(self.head()).get_nonce(address)
            return self.mempool.pending_nonce(address, account_nonce)

    def signer_for(self, address: Address) -> LocalAccount | None:
        """The unlocked dev key for `address` (eth_sendTransaction), None if not unlocked."""
        return self._signers.get(Address(bytes(address)))

    # -- dev block production ----------------------------------------------------------

    def mine_dev_blocks(self, count: int = 1, timestamp: int | None = None) -> list[bytes]:
        """Seal `count` blocks from the mempool now; the first at `timestamp` if given."""
        self._require_dev("mine_dev_blocks")
        if count < 1:
            raise ValueError(f"block count must be at least 1, got {count}")
        with self.lock:
            self._check_open()
            hashes = []
            for index in range(count):
                produced = self._produce_dev_block(timestamp if index == 0 else None)
                hashes.append(produced.block.hash)
            return hashes

    def _produce_dev_block(self, timestamp: int | None = None) -> ProducedBlock:
        head = self.head()
        explicit = timestamp if timestamp is not None else self._next_timestamp
        if explicit is not None:
            self._check_timestamp(head, explicit)
            when = explicit
        else:
            when = self.next_timestamp(head)
        produced = produce_dev_block(
            self.chain, self._block_candidates(head), timestamp=when, coinbase=self.coinbase
        )
        if explicit is not None:  # later blocks continue from the chosen time
            self._next_timestamp = None
            self._time_offset = explicit - int(time.time())
        self._after_produced(produced)
        return produced

    def _block_candidates(self, parent: BlockHeaderAPI) -> list[SignedTransactionAPI]:
        """Executable pool transactions that fit a block on `parent` (by their gas limits)."""
        gas_limit = self.child_header(parent).gas_limit
        candidates = self.mempool.executable(self.state_at(parent), self.next_base_fee(parent))
        selected, gas, skipped_senders = [], 0, set()
        for tx in candidates:
            sender = tx.sender
            if sender in skipped_senders:
                continue
            if gas + tx.gas > gas_limit:
                skipped_senders.add(sender)  # its later nonces wait for the next block
                continue
            selected.append(tx)
            gas += tx.gas
        return selected

    def _after_produced(self, produced: ProducedBlock) -> None:
        self.mempool.remove(tx.hash for tx in produced.included)
        for tx, reason in produced.rejected:
            log.info("block #%d left out 0x%s: %s", produced.block.number, tx.hash.hex(), reason)
        self.mempool.remove(tx.hash for tx, _ in produced.rejected)
        self._after_new_head(produced.new_canonical, produced.old_canonical)
        log.info(
            "sealed block #%d 0x%s with %d transaction(s)",
            produced.block.number,
            produced.block.hash.hex(),
            len(produced.included),
        )

    def _after_new_head(
        self, new_canonical: Sequence[BlockAPI], old_canonical: Sequence[BlockAPI]
    ) -> None:
        self._head_moved.set()  # an idle proof-of-work search on the old head is moot
        head = self.head()
        state = self.state_at(head)
        self.mempool.prune(state)
        if old_canonical:  # a reorganisation: give the dropped transactions another chance
            kept = {tx.hash for block in new_canonical for tx in block.transactions}
            for block in old_canonical:
                for tx in block.transactions:
                    if tx.hash not in kept:
                        self._readmit(tx, state, head)
        if new_canonical:
            self._notify(self._listeners.heads, tuple(new_canonical))

    def _readmit(self, tx: SignedTransactionAPI, state: StateAPI, head: BlockHeaderAPI) -> None:
        try:
            self.mempool.add(
                tx,
                state,
                block_gas_limit=self.child_header(head).gas_limit,
                base_fee=0,
            )
        except TransactionRejected:
            pass

    def _run_interval_miner(self) -> None:
        assert self.block_time is not None
        deadline = time.monotonic() + self.block_time
        while not self._stop.wait(max(0.0, deadline - time.monotonic())):
            deadline += self.block_time
            try:
                with self.lock:
                    if self._closed:
                        return
                    self._produce_dev_block()
            except Exception:
                log.exception("interval mining failed; trying again next interval")

    def _run_idle_miner(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._seal_idle_block():
                    self._stop.wait(0.5)
            except ValidationError as exc:  # e.g. an open task: idle blocks are not allowed
                log.debug("no idle block on this head: %s", exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("idle mining failed; retrying in a second")
                self._stop.wait(1.0)

    def _seal_idle_block(self) -> bool:
        """Build an idle block under the lock, search its nonce without it, then import.

        Same steps as block_production.produce_idle_block, split so that RPC reads are not
        blocked for the seconds the proof of work takes. The search is abandoned when the
        head moves (a block arrived) or the node stops. True if a block was sealed.
        """
        with self.lock:
            if self._closed:
                return False
            parent = self.head()
            timestamp = earliest_idle_timestamp(self.chain, None)
            if timestamp > time.time():
                return False  # a PoLe block's reveal window is still open
            task = best_open_task(self.state_at(parent))
            if task is not None and task.deadline >= timestamp:
                return False  # a task is open: only a PoLe block may extend this head
            transactions = self._block_candidates(parent)
            produced, work = build_idle_block(
                self.chain, transactions, timestamp=timestamp, coinbase=self.coinbase, parent=parent
            )
            self._head_moved.clear()
        try:
            solve_idle_block(produced, work, self._head_moved)
        except BlockProductionStopped:
            return False
        with self.lock:
            if self._closed or self.head().hash != parent.hash:
                return False
            persist(self.chain, produced)
            self._after_produced(produced)
            return True

    # -- dev controls ------------------------------------------------------------------

    def snapshot(self) -> int:
        """Remember the head, the clock and the mempool; `revert(id)` returns to them."""
        self._require_dev("snapshot")
        with self.lock:
            snapshot_id = next(self._snapshot_ids)
            self._snapshots[snapshot_id] = Snapshot(
                head_hash=self.head().hash,
                time_offset=self._time_offset,
                time_floor=self._time_floor,
                next_timestamp=self._next_timestamp,
                pending=tuple(self.mempool.transactions()),
            )
            return snapshot_id

    def revert(self, snapshot_id: int) -> bool:
        """Go back to snapshot `snapshot_id`; it and every later snapshot are used up.

        False if there is no such snapshot (never taken, or already used).
        """
        self._require_dev("revert")
        with self.lock:
            snap = self._snapshots.get(snapshot_id)
            if snap is None:
                return False
            for later in [i for i in self._snapshots if i >= snapshot_id]:
                del self._snapshots[later]
            self.chain.rewind_to(snap.head_hash)
            self._time_offset = snap.time_offset
            self._time_floor = snap.time_floor
            self._next_timestamp = snap.next_timestamp
            self.mempool.clear()
            head = self.head()
            state = self.state_at(head)
            for tx in snap.pending:
                self._readmit(tx, state, head)
            log.info("reverted to snapshot %d (head #%d)", snapshot_id, head.block_number)
            return True

    def increase_time(self, seconds: int) -> int:
        """Move the dev clock forward; returns the total offset in seconds.

        The next block is also at least `seconds` after the current head, even when
        automining has pushed block times ahead of the wall clock.
        """
        self._require_dev("increase_time")
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self.lock:
            self._time_offset += seconds
            self._time_floor = max(self._time_floor, self.head().timestamp + seconds)
            return self._time_offset

    def set_next_block_timestamp(self, timestamp: int) -> None:
        """The next dev block gets exactly `timestamp` (later blocks continue from it)."""
        self._require_dev("set_next_block_timestamp")
        with self.lock:
            self._check_timestamp(self.head(), timestamp)
            self._next_timestamp = timestamp

    def set_automine(self, enabled: bool) -> None:
        self._require_dev("set_automine")
        with self.lock:
            self.automine = enabled

    def _check_timestamp(self, parent: BlockHeaderAPI, timestamp: int) -> None:
        if timestamp <= parent.timestamp:
            raise ValueError(
                f"timestamp {timestamp} is not after the head block's timestamp "
                f"{parent.timestamp}"
            )

    # -- blocks from outside -----------------------------------------------------------

    def import_block(self, rlp_bytes: bytes) -> bytes:
        """Validate and import an RLP-encoded block; returns its hash.

        Importing a block already stored is a no-op. Raises BlockRejected.
        """
        with self.lock:
            self._check_open()
            block = self._decode_block(rlp_bytes)
            if self.chain.chaindb.header_exists(block.hash):
                return block.hash
            ahead = block.header.timestamp - time.time()
            if not self.dev and ahead > MAX_FUTURE_DRIFT:
                # Node policy, not consensus (it depends on the local clock): a block from the
                # future could expire tasks early and stack idle blocks cheaply. Refused for
                # now, acceptable once its time has come (as geth does).
                raise BlockRejected(
                    f"block #{block.number} is {ahead:.0f} s in the future (limit "
                    f"{MAX_FUTURE_DRIFT} s); try again later"
                )
            try:
                self.chain.get_block_header_by_hash(block.header.parent_hash)
            except HeaderNotFound:
                raise BlockRejected(
                    f"unknown parent 0x{block.header.parent_hash.hex()} of block "
                    f"#{block.number} 0x{block.hash.hex()}"
                ) from None
            try:
                result = self.chain.import_block(block)
            except ValidationError as exc:
                raise BlockRejected(f"invalid block #{block.number}: {exc}") from exc
            except Exception as exc:
                log.debug("import of block #%d failed", block.number, exc_info=True)
                raise BlockRejected(
                    f"invalid block #{block.number}: {type(exc).__name__}: {exc}"
                ) from exc
            self._after_new_head(result.new_canonical_blocks, result.old_canonical_blocks)
            log.info(
                "imported block #%d 0x%s%s",
                block.number,
                block.hash.hex(),
                "" if result.new_canonical_blocks else " (not canonical)",
            )
            return block.hash

    def _decode_block(self, rlp_bytes: bytes) -> BlockAPI:
        def decode(number: int) -> BlockAPI:
            block_class = self.chain.get_vm_class_for_block_number(number).get_block_class()
            return rlp.decode(bytes(rlp_bytes), sedes=block_class)

        try:
            block = decode(self.head().block_number + 1)
            if block.number < 0:
                raise ValueError("negative block number")
            expected = self.chain.get_vm_class_for_block_number(block.number).get_block_class()
            if not isinstance(block, expected):
                block = decode(block.number)
        except Exception as exc:
            raise BlockRejected(f"cannot decode block: {type(exc).__name__}: {exc}") from exc
        if block.number == 0:
            raise BlockRejected("a genesis block cannot be imported")
        return block

    def submit_pole_block(self, seal_request: SealRequest) -> bytes:
        """Build a PoLe block on the head (or `seal_request.parent_hash`), seal it, import it.

        Pool transactions are included when building on the head. The block goes through the
        chain's full validation (the seal verifier included) before it is stored; it becomes
        the head only if it wins fork choice. Returns its hash; raises BlockRejected.
        """
        request = seal_request
        with self.lock:
            self._check_open()
            head = self.head()
            try:
                parent = (
                    self.chain.get_block_header_by_hash(request.parent_hash)
                    if request.parent_hash is not None
                    else head
                )
            except HeaderNotFound:
                raise BlockRejected(f"unknown parent 0x{request.parent_hash.hex()}") from None
            transactions = self._block_candidates(parent) if parent.hash == head.hash else []
            try:
                produced = produce_pole_block(
                    self.chain,
                    transactions,
                    coinbase=request.coinbase,
                    task_id=request.task_id,
                    model_commitment=request.model_commitment,
                    train_bps=request.train_bps,
                    test_bps=request.test_bps,
                    release_digest=request.release_digest,
                    parent=parent,
                    # dev nodes keep their clock controls (evm_increaseTime) for PoLe blocks too
                    timestamp=self.next_timestamp(parent) if self.dev else None,
                )
            except ValidationError as exc:
                raise BlockRejected(f"PoLe block refused: {exc}") from exc
            except Exception as exc:  # a verifier bug must not look like a node failure
                log.warning("sealing a PoLe block failed unexpectedly", exc_info=True)
                raise BlockRejected(f"PoLe block refused: {type(exc).__name__}: {exc}") from exc
            if produced.new_canonical:  # it won fork choice (a sibling may have been dropped)
                self._after_produced(produced)
            return produced.block.hash

    # -- views -------------------------------------------------------------------------

    def tasks(self) -> list[tuple[Task, tuple | None]]:
        """Every task of the registry at the head, by id, with its result once settled."""
        with self.lock:
            state = self.state_at(self.head())
            (count,) = registry_view(state, "task_count")
            return [self._task_with_result(state, task_id) for task_id in range(1, count + 1)]

    def task(self, task_id: int) -> tuple[Task, tuple | None]:
        with self.lock:
            state = self.state_at(self.head())
            (count,) = registry_view(state, "task_count")
            if not 1 <= task_id <= count:
                raise KeyError(f"no task {task_id} (the registry has {count})")
            return self._task_with_result(state, task_id)

    def withheld(self, digest: bytes) -> bool:
        """A blob this node must not serve yet: the test set of an open, unreleased task.

        The data node uploads its test set just before the release; until the release is
        stored, serving it would let late miners train on the test set and still announce.
        """
        with self.lock:
            task_id = self._open_test_sets().get(bytes(digest))
            return task_id is not None and not self.solutions.is_released(task_id)

    def _open_test_sets(self) -> dict[bytes, int]:
        """Test-set commitment -> task id of the open tasks at the head, read once per head
        (miners poll for blobs; the registry reads cost an EVM call per task)."""
        head = self.head()
        if self._test_sets_at is None or self._test_sets_at[0] != head.hash:
            state = self.state_at(head)
            (open_ids,) = registry_view(state, "open_task_ids")
            commitments = {read_task(state, i).test_set_commitment: i for i in open_ids}
            self._test_sets_at = (head.hash, commitments)
        return self._test_sets_at[1]

    def best_task(self, parent: BlockHeaderAPI | None = None) -> Task | None:
        """The task a miner must work on when building on ``parent`` (default: the head)."""
        with self.lock:
            return best_open_task(self.state_at(parent or self.head()))

    @staticmethod
    def _task_with_result(state: StateAPI, task_id: int) -> tuple[Task, tuple | None]:
        task = read_task(state, task_id)
        if task.status != TASK_SETTLED:
            return task, None
        (result,) = registry_view(state, "get_result", [task_id])
        return task, result

    def status(self) -> dict[str, Any]:
        with self.lock:
            head = self.head()
            return {
                "head_number": head.block_number,
                "head_hash": "0x" + head.hash.hex(),
                "head_timestamp": head.timestamp,
                "chain_id": self.chain_id,
                "dev": self.dev,
                "automine": self.automine,
                "block_time": self.block_time,
                "mine_idle": self.mine_idle,
                "peers": 0,
                "mempool_size": len(self.mempool),
                "datadir": str(self.datadir) if self.datadir else None,
            }

    # -- guards ------------------------------------------------------------------------

    def _require_dev(self, what: str) -> None:
        if not self.dev:
            raise DevOnly(f"{what} is only available on a dev node")

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the node is closed")
