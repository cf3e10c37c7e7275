"""Sync: catch up with a peer whose chain has a higher total score, then follow gossip.

Triggered by a peer's status (handshake) that leads ours, by a gossiped block whose parent
is missing, and every `poll_interval` seconds (a missed gossip message must not leave a node
behind for good). One round asks every peer for a fresh status and syncs from the best:
1. the common ancestor: the highest of the peer's canonical headers this node holds;
2. segments after it, `SEGMENT` blocks each: the headers, checked header-only (links to the
   ancestor or the previous segment, py-evm's `validate_chain`, which runs each header's
   seal checks), then the blocks, each matched to its checked header;
3. each block imported through the node's own importer (re-execution, the full seal
   checks), in order; a PoLe block whose release or model is not local has them fetched
   from peers first (block_data.BlockDataFetcher), with the node lock released.
The next segment downloads while this one imports (the peer serves it meanwhile), and
consecutive imports share one hold of the node lock for up to `IMPORT_SLICE_S`, so the
threads that wake on every new head and want the lock (the open-task prefetch, RPC,
gossip) run once between slices rather than between every two blocks. Each block is still
validated in full and committed in its own database batch: a node killed mid-sync keeps
every block imported before the kill.
Importing a branch with more score makes it canonical (py-evm's fork choice): that is the
reorg after a partition heals. A peer that serves headers or blocks that do not parse, link
or pass the checks is reported to the network (`Offence.INVALID_CHAIN`, 50 points: twice and
it is dropped and banned, as for invalid gossip) and the next peer is tried; nothing it sent
is stored. Failures that need not be the peer's fault (a peer that reorganised between two
requests, data no peer has yet, a timeout, a bug of this node) cost it nothing.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import rlp
from eth.abc import BlockHeaderAPI
from eth_utils import ValidationError, encode_hex

from pole_chain.net import ChainStatus, Network, NetworkError, Offence, RefusedError, WireError
from pole_chain.net.wire import MAX_BLOCKS_PER_REQUEST, MAX_HEADERS_PER_REQUEST
from pole_chain.node.block_data import BlockDataFetcher
from pole_chain.node.block_intake import BlockIntake, IntakeResult, Outcome
from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.locking import NodeLock
from pole_chain.node.peer_view import NodeChainView
from vm_hooks.chain import PoLeChain

log = logging.getLogger("pole.net")

#: Seconds between two status rounds when nothing triggers one.
POLL_INTERVAL = 5.0
#: Blocks per downloaded segment: one header request and one block request.
SEGMENT = MAX_BLOCKS_PER_REQUEST
#: Seconds one slice of imports holds the node lock (plus the last block's import): how
#: long an RPC call or a gossiped block waits for a sync at most.
IMPORT_SLICE_S = 0.25


@dataclass(frozen=True)
class _Download:
    """One segment as the peer sent it (RLP), not checked yet."""

    headers: list[bytes]
    blocks: list[bytes]


@dataclass(frozen=True)
class SyncProgress:
    """What eth_syncing reports while a sync runs (geth's fields): where this sync started,
    where the node is now, and the head of the peer it syncs from."""

    starting_block: int
    current_block: int
    highest_block: int


class SyncFailed(Exception):
    """This peer cannot be synced from now (bad headers, a block that does not import).

    `offence` is set when what the peer served proves it wrong (not merely behind, or
    reorganised since): sync reports it, so a peer feeding bad chains is dropped, not
    retried every round."""

    def __init__(self, reason: str, offence: Offence | None = None) -> None:
        super().__init__(reason)
        self.offence = offence


def _bad(reason: str) -> SyncFailed:
    return SyncFailed(reason, Offence.INVALID_CHAIN)


_PEER_FAILURES = (SyncFailed, NetworkError, WireError, RefusedError)


class Synchronizer:
    """Runs sync rounds on its own thread."""

    def __init__(
        self,
        network: Network,
        view: NodeChainView,
        intake: BlockIntake,
        fetcher: BlockDataFetcher,
        chain: PoLeChain,
        reader: ChainReader,
        lock: NodeLock,
        *,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._network = network
        self._view = view
        self._intake = intake
        self._fetcher = fetcher
        self._chain = chain
        self._reader = reader
        self._lock = lock
        self._poll_interval = poll_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pole-sync", daemon=True)
        self.syncing = False
        self._target: tuple[int, int] | None = None  # (starting block, peer's head) of this sync

    def progress(self) -> SyncProgress | None:
        """The running sync's progress; None when not syncing (eth_syncing answers false)."""
        target = self._target
        if target is None:
            return None
        current = self._reader.head().block_number
        return SyncProgress(target[0], current, max(target[1], current))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def wake(self) -> None:
        """Run a round now (a leading peer, or a block whose parent is missing)."""
        self._wake.set()

    def on_peer_status(self, peer_id: str, status: ChainStatus) -> None:
        """NodeSink hook: a peer that leads starts a round."""
        if status.total_score > self._view.head().total_score:
            self.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.sync_round()
            except Exception:  # a bug in one round must not end sync for good
                log.exception("sync round failed")

    def sync_round(self) -> None:
        """Sync from the best peer that leads (trying the next if one fails)."""
        ours = self._view.head().total_score
        for peer_id, status in self._leading_peers(ours):
            self.syncing = True
            self._target = (self._reader.head().block_number, status.head_number)
            try:
                self._sync_from(peer_id, status)
                return
            except _PEER_FAILURES as exc:
                log.info("sync from %s stopped: %s", peer_id, exc)
                self._report(peer_id, exc)
            except Exception:  # libp2p's own stream errors, or a bug: the next peer is tried
                log.warning("sync from %s failed", peer_id, exc_info=True)
            finally:
                self.syncing = False
                self._target = None

    def _report(self, peer_id: str, failure: Exception) -> None:
        offence = getattr(failure, "offence", None)
        if offence is None:
            return
        log.warning("peer %s served an invalid chain: %s", peer_id, failure)
        try:
            self._network.report_peer(peer_id, offence)
        except NetworkError:  # stopping: nobody to report to
            pass

    def _leading_peers(self, our_score: int) -> list[tuple[str, ChainStatus]]:
        """Peers whose fresh status has more score than ours, best first."""
        leading = []
        for record in self._network.peers():
            try:
                status = self._network.request_status(record.peer_id)
            except Exception as exc:  # a peer gone or refusing; libp2p raises several types
                log.debug("status from %s failed: %s", record.peer_id, exc)
                continue
            if status.total_score > our_score:
                leading.append((record.peer_id, status))
        return sorted(leading, key=lambda item: item[1].total_score, reverse=True)

    def _sync_from(self, peer_id: str, status: ChainStatus) -> None:
        root = self._common_ancestor(peer_id, status.head_number)
        log.info("syncing from %s: blocks %d..%d", peer_id, root.block_number + 1,
                 status.head_number)
        with ThreadPoolExecutor(1, thread_name_prefix="pole-sync-download") as downloads:
            ahead: Future[_Download] | None = downloads.submit(
                self._download, peer_id, root.block_number + 1
            )
            while ahead is not None and not self._stop.is_set():
                segment = ahead.result()
                headers = self._checked_headers(root, segment.headers)
                if not headers:
                    return
                last = headers[-1].block_number
                ahead = None
                if last < status.head_number:
                    ahead = downloads.submit(self._download, peer_id, last + 1)
                self._import_segment(headers, segment.blocks)
                root = headers[-1]

    def _common_ancestor(self, peer_id: str, peer_head: int) -> BlockHeaderAPI:
        """The highest of the peer's canonical headers that this node holds."""
        top = min(peer_head, self._reader.head().block_number)
        while top > 0:
            start = max(0, top - MAX_HEADERS_PER_REQUEST + 1)
            headers = self._decode_headers(
                self._network.request_headers(peer_id, start, top - start + 1)
            )
            for header in reversed(headers):
                if self._reader.has_header(header.hash):
                    return header
            top = start - 1
        return self._reader.canonical_header(0)

    def _download(self, peer_id: str, start: int) -> _Download:
        """The peer's headers of one segment from `start`, and the blocks they name."""
        headers = self._network.request_headers(peer_id, start, SEGMENT)
        blocks: list[bytes] = []
        while len(blocks) < len(headers):
            wanted = len(headers) - len(blocks)
            more = self._network.request_blocks(peer_id, start + len(blocks), wanted)
            if not more:
                raise SyncFailed(f"no blocks from #{start + len(blocks)}")
            if len(more) > wanted:
                raise _bad(f"{len(more)} blocks served for {wanted} asked")
            blocks += more
        return _Download(headers, blocks)

    def _checked_headers(self, root: BlockHeaderAPI, encoded: list[bytes]) -> list[BlockHeaderAPI]:
        """The headers after `root` (held here, or the previous segment's last), linked to it
        and seal-checked."""
        headers = self._decode_headers(encoded)
        if not headers:
            return []
        start = root.block_number + 1
        if [h.block_number for h in headers] != list(range(start, start + len(headers))):
            raise _bad("headers out of order")
        if headers[0].parent_hash != root.hash:
            # not an offence: the peer may have reorganised since its previous answer
            raise SyncFailed(f"header #{start} does not extend the block before it here")
        with self._lock:
            try:
                self._chain.validate_chain(root, tuple(headers))
            except ValidationError as exc:
                raise _bad(f"invalid headers: {exc}") from exc
        return headers

    def _import_segment(self, headers: list[BlockHeaderAPI], blocks: list[bytes]) -> None:
        """Import the blocks of checked headers in order, slice by slice; a block whose data
        is missing is fetched between two slices (no lock held while peers answer)."""
        done, fetched = 0, -1
        while done < len(headers) and not self._stop.is_set():
            done, missing = self._import_slice(headers, blocks, done)
            if missing is None:
                continue
            number = headers[done].block_number
            if done == fetched:  # its data came, and the block still lacks some
                raise SyncFailed(f"block #{number}: {missing.reason}")
            assert missing.block is not None
            if not self._fetcher.fetch_for(missing.block):
                raise SyncFailed(f"no peer has the data of block #{number}")
            fetched = done

    def _import_slice(
        self, headers: list[BlockHeaderAPI], blocks: list[bytes], done: int
    ) -> tuple[int, IntakeResult | None]:
        """Import from index `done` under one hold of the lock until IMPORT_SLICE_S has
        passed or the segment ends; stops early at a block whose data is missing (returned)."""
        with self._lock:
            until = time.monotonic() + IMPORT_SLICE_S
            while done < len(headers):
                result = self._import_one(blocks[done], headers[done])
                if result.outcome is Outcome.DATA_MISSING:
                    return done, result
                done += 1
                if time.monotonic() >= until:
                    break
        return done, None

    def _import_one(self, raw: bytes, header: BlockHeaderAPI) -> IntakeResult:
        """Import one block of its checked header: imported, known or data missing; raises
        SyncFailed for anything else."""
        result = self._intake.take(raw)
        if result.block is not None and result.block.hash != header.hash:
            # not an offence: the peer may have reorganised between the two requests
            raise SyncFailed(f"block #{header.block_number} does not match its header")
        if result.outcome in (Outcome.IMPORTED, Outcome.KNOWN, Outcome.DATA_MISSING):
            return result
        reason = (f"block #{header.block_number} {encode_hex(header.hash)}: "
                  f"{result.outcome.value} {result.reason}")
        raise _bad(reason) if result.outcome is Outcome.INVALID else SyncFailed(reason)

    def _decode_headers(self, encoded: list[bytes]) -> list[BlockHeaderAPI]:
        # One fork (Prague) for the whole chain: the head's header class decodes them all.
        header_class = type(self._reader.head())
        try:
            return [rlp.decode(item, sedes=header_class) for item in encoded]
        except Exception as exc:  # rlp raises several types for junk
            raise _bad(f"malformed header: {exc}") from exc
