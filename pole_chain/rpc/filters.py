"""Log queries (eth_getLogs) and polled filters (eth_newFilter and friends).

A filter is a queue the node fills as things happen: the hashes of new canonical blocks (block
and log filters) or of admitted transactions (pending-transaction filters). Polling
(eth_getFilterChanges) empties it; log filters turn their queued blocks into matching logs at
poll time, so block import never pays for a filter. A filter nobody polls for
FILTER_TIMEOUT seconds is dropped, as in geth.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI
from eth.exceptions import HeaderNotFound
from eth_bloom import BloomFilter

from pole_chain.rpc.dispatch import LIMIT_EXCEEDED, RESOURCE_NOT_FOUND, SERVER_ERROR, RpcError
from pole_chain.rpc.formatting import BlockRef, LogFilter, format_log, hex_data, topic_bytes

if TYPE_CHECKING:
    from pole_chain.node.node import Node

#: eth_getLogs answers at most this many blocks and logs per call.
MAX_LOG_BLOCK_RANGE = 10_000
MAX_LOG_RESULTS = 10_000
#: A filter not polled for this long is removed.
FILTER_TIMEOUT = 300.0
MAX_FILTERS = 1_000
#: Entries kept per filter between polls (the oldest are dropped beyond this).
MAX_QUEUED = 10_000


def _bloom_may_match(bloom: BloomFilter, criteria: LogFilter) -> bool:
    if criteria.addresses and not any(address in bloom for address in criteria.addresses):
        return False
    for alternatives in criteria.topics:
        if alternatives is not None and not any(topic in bloom for topic in alternatives):
            return False
    return True


def block_logs(node: Node, block: BlockAPI, criteria: LogFilter) -> list[dict[str, Any]]:
    """The logs of `block` that match `criteria`, as JSON objects (caller holds node.lock)."""
    header = block.header
    if not _bloom_may_match(BloomFilter(header.bloom), criteria):
        return []
    matched = []
    log_index = 0
    receipts = node.reader.receipts(block)
    for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
        for log in receipt.logs:
            topics = [topic_bytes(topic) for topic in log.topics]
            if criteria.matches(log.address, topics):
                matched.append(
                    format_log(
                        log, header=header, tx_hash=tx.hash, tx_index=tx_index, log_index=log_index
                    )
                )
            log_index += 1
    return matched


def block_number_of(node: Node, ref: BlockRef) -> int:
    """A tag or number as a block number, for log ranges (pending reads as latest)."""
    if ref.number is not None:
        return ref.number
    if ref.tag == "earliest":
        return 0
    return node.reader.head().block_number


def query_logs(node: Node, criteria: LogFilter) -> list[dict[str, Any]]:
    """eth_getLogs: matching logs of one block (blockHash) or of a range of canonical blocks."""
    with node.lock:
        reader = node.reader
        if criteria.block_hash is not None:
            try:
                header = reader.header(criteria.block_hash)
            except HeaderNotFound:
                raise RpcError(
                    RESOURCE_NOT_FOUND, f"unknown block 0x{criteria.block_hash.hex()}"
                ) from None
            return block_logs(node, reader.block(header), criteria)
        head_number = reader.head().block_number
        first = block_number_of(node, criteria.from_block)
        last = min(block_number_of(node, criteria.to_block), head_number)
        if first > head_number:
            return []
        if first > last:
            raise RpcError(
                SERVER_ERROR, f"invalid block range: fromBlock {first} is after toBlock {last}"
            )
        if last - first + 1 > MAX_LOG_BLOCK_RANGE:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"block range too large: {last - first + 1} blocks, limit {MAX_LOG_BLOCK_RANGE}",
            )
        logs: list[dict[str, Any]] = []
        for number in range(first, last + 1):
            header = reader.canonical_header(number)
            if not _bloom_may_match(BloomFilter(header.bloom), criteria):
                continue
            logs.extend(block_logs(node, reader.block(header), criteria))
            if len(logs) > MAX_LOG_RESULTS:
                raise RpcError(
                    LIMIT_EXCEEDED,
                    f"query returned more than {MAX_LOG_RESULTS} results; "
                    f"narrow the block range (the limit was reached at block {number})",
                )
        return logs


@dataclass
class _Filter:
    kind: str  # "block" | "pending" | "logs"
    criteria: LogFilter | None = None
    queue: list[Any] = field(default_factory=list)
    last_poll: float = field(default_factory=time.monotonic)

    def push(self, item: Any) -> None:
        self.queue.append(item)
        if len(self.queue) > MAX_QUEUED:
            del self.queue[: len(self.queue) - MAX_QUEUED]


class FilterStore:
    """The installed filters of one node, fed by the node's head and pending listeners."""

    def __init__(self, node: Node, *, timeout: float = FILTER_TIMEOUT) -> None:
        self.node = node
        self.timeout = timeout
        self._lock = threading.Lock()
        self._filters: dict[str, _Filter] = {}
        node.events.subscribe_heads(self._on_new_heads)
        node.events.subscribe_pending(self._on_pending)

    # -- feeding (called by the node, under node.lock) ---------------------------------

    def _on_new_heads(self, blocks: Sequence[BlockAPI]) -> None:
        with self._lock:
            for flt in self._filters.values():
                if flt.kind in ("block", "logs"):
                    for block in blocks:
                        flt.push(block.hash)

    def _on_pending(self, tx: SignedTransactionAPI) -> None:
        with self._lock:
            for flt in self._filters.values():
                if flt.kind == "pending":
                    flt.push(tx.hash)

    # -- installing --------------------------------------------------------------------

    def install(self, kind: str, criteria: LogFilter | None = None) -> str:
        with self._lock:
            self._expire()
            if len(self._filters) >= MAX_FILTERS:
                raise RpcError(
                    LIMIT_EXCEEDED, f"too many filters installed (limit {MAX_FILTERS})"
                )
            filter_id = "0x" + secrets.token_hex(16)
            self._filters[filter_id] = _Filter(kind, criteria)
            return filter_id

    def uninstall(self, filter_id: str) -> bool:
        with self._lock:
            return self._filters.pop(filter_id, None) is not None

    def criteria(self, filter_id: str) -> LogFilter:
        with self._lock:
            flt = self._get(filter_id)
            if flt.kind != "logs" or flt.criteria is None:
                raise RpcError(SERVER_ERROR, f"filter {filter_id} is not a log filter")
            flt.last_poll = time.monotonic()
            return flt.criteria

    # -- polling -----------------------------------------------------------------------

    def changes(self, filter_id: str) -> list[Any]:
        with self._lock:
            flt = self._get(filter_id)
            flt.last_poll = time.monotonic()
            queued, flt.queue = flt.queue, []
        if flt.kind != "logs":
            return [hex_data(item) for item in queued]
        assert flt.criteria is not None
        return self._logs_of_blocks(queued, flt.criteria)

    def _logs_of_blocks(self, block_hashes: list[bytes], criteria: LogFilter) -> list[Any]:
        node = self.node
        logs: list[Any] = []
        with node.lock:
            low = criteria.from_block.number
            high = criteria.to_block.number
            for block_hash in block_hashes:
                try:
                    header: BlockHeaderAPI = node.reader.header(block_hash)
                except HeaderNotFound:
                    continue
                if not node.reader.is_canonical(header):
                    continue  # reverted or reorganised away since it was queued
                if (low is not None and header.block_number < low) or (
                    high is not None and header.block_number > high
                ):
                    continue
                logs.extend(block_logs(node, node.reader.block(header), criteria))
        return logs

    def _get(self, filter_id: str) -> _Filter:
        self._expire()
        flt = self._filters.get(filter_id)
        if flt is None:
            raise RpcError(SERVER_ERROR, "filter not found")
        return flt

    def _expire(self) -> None:
        now = time.monotonic()
        for filter_id in [i for i, f in self._filters.items() if now - f.last_poll > self.timeout]:
            del self._filters[filter_id]
