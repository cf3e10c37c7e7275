"""Blocks from peers: import one through the node's own importer and say what happened.

Gossip, the pending-block queue and sync all hand peers' blocks to `BlockImporter`, the same
path pole_submitBlock takes, and all need the same reading of the result: imported, already
known, parent missing (sync), data missing (fetch the release and model, then retry), not
yet timely (a clock difference, nobody's fault), invalid (the sender is to blame) or a bug in
this node (never the sender's fault: see block_import.NodeBug).

A PoLe block whose release or model is not here is classified DATA_MISSING before it is
imported, without the node lock: trying the import would first wait for the lock (another
sibling's import, a few hundred ms when three arrive together) only to fail the data check,
and the fetch could not start meanwhile. Its header's own seal rules are still checked
first, as import does, so a forged seal is INVALID and never held. The lookups made without
the lock are of headers, which once stored never change or go, and of the solution book,
which has its own lock.

Blocks taken in here are remembered as coming from the network, so the publisher, which
hears of every new head, does not gossip them back out (gossipsub relays what the node
accepted; synced blocks are old news to the peers that sent them). `from_network()` marks a
thread's work the same way for transactions.
"""
from __future__ import annotations

import enum
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from eth.abc import BlockAPI
from eth_utils import ValidationError

from pole_chain.node.block_data import pole_seal
from pole_chain.node.block_import import BlockImporter, BlockRejected, NodeBug
from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.locking import NodeClosed, NodeLock
from vm_hooks.seal_errors import DataUnavailableError

log = logging.getLogger("pole.net")

#: Hashes of blocks from peers remembered (enough to cover any reorg the node publishes).
RECEIVED_MEMORY = 4096


class Outcome(enum.Enum):
    """What importing one block from a peer did."""

    IMPORTED = "imported"
    KNOWN = "known"
    UNKNOWN_PARENT = "unknown parent"
    DATA_MISSING = "data missing"
    DEFERRED = "deferred"  # a PoLe block from gossip: imported off the gossip path
    NOT_YET = "not yet"  # e.g. ahead of this node's clock: acceptable later
    INVALID = "invalid"
    NODE_BUG = "node bug"


@dataclass(frozen=True)
class IntakeResult:
    outcome: Outcome
    block: BlockAPI | None  # None when the bytes did not decode
    reason: str = ""


class BlockIntake:
    """Imports peers' blocks and tells callers (and listeners) where they came from."""

    def __init__(
        self,
        importer: BlockImporter,
        reader: ChainReader,
        lock: NodeLock,
        lacks_data: Callable[[BlockAPI], bool] = lambda block: False,
    ) -> None:
        self._importer = importer
        self._lacks_data = lacks_data
        self._reader = reader
        self._lock = lock
        self._inbound = threading.local()
        self._received: OrderedDict[bytes, None] = OrderedDict()
        #: told each imported block's hash, under the node lock (held gossip waits on it)
        self.on_imported: Callable[[bytes], None] = lambda block_hash: None

    @property
    def receiving(self) -> bool:
        """Whether this thread is importing something that came from the network."""
        return bool(getattr(self._inbound, "active", False))

    @contextmanager
    def from_network(self) -> Iterator[None]:
        """Mark this thread's work as inbound (listeners do not gossip it back out)."""
        previous = self.receiving
        self._inbound.active = True
        try:
            yield
        finally:
            self._inbound.active = previous

    def came_from_network(self, block_hash: bytes) -> bool:
        """Whether a block was imported from a peer (call under the node lock)."""
        return bytes(block_hash) in self._received

    def take(self, rlp_bytes: bytes, *, defer_pole: bool = False) -> IntakeResult:
        """Decode, classify and (when it can) import one RLP block from a peer.

        `defer_pole` (gossip) answers DEFERRED for a PoLe block whose data is here, after its
        header seal checks: importing it re-evaluates a model, seconds for a large one, and
        py-libp2p drops a message whose validator runs past 5 s; the pending queue imports it
        and the node publishes it."""
        try:
            block = self._importer.decode(rlp_bytes)
        except BlockRejected as exc:
            return IntakeResult(Outcome.INVALID, None, str(exc))
        if self._reader.has_header(block.hash):
            return IntakeResult(Outcome.KNOWN, block)
        if not self._reader.has_header(block.header.parent_hash):
            return IntakeResult(Outcome.UNKNOWN_PARENT, block)
        lacks_data = self._lacks_data(block)
        if lacks_data or (defer_pole and pole_seal(block) is not None):
            try:
                self._importer.check_header_seal(block)
            except BlockRejected as exc:
                return IntakeResult(Outcome.INVALID, block, str(exc))
            if lacks_data:
                return IntakeResult(Outcome.DATA_MISSING, block, "its release or model is not here")
            return IntakeResult(Outcome.DEFERRED, block, "imported by the pending queue")
        with self._lock:
            return self._import(block)

    def _import(self, block: BlockAPI) -> IntakeResult:
        self._received[bytes(block.hash)] = None  # before import: head listeners run inside it
        while len(self._received) > RECEIVED_MEMORY:
            self._received.popitem(last=False)
        try:
            self._importer.import_decoded(block)
        except BlockRejected as exc:
            cause = exc.__cause__
            if _caused_by(exc, DataUnavailableError):
                return IntakeResult(Outcome.DATA_MISSING, block, str(exc))
            if isinstance(cause, ValidationError):
                return IntakeResult(Outcome.INVALID, block, str(exc))
            # refused by node policy (future timestamp) or a parent that vanished: later
            return IntakeResult(Outcome.NOT_YET, block, str(exc))
        except (NodeBug, NodeClosed) as exc:  # NodeBug was logged with its traceback
            return IntakeResult(Outcome.NODE_BUG, block, str(exc))
        self.on_imported(bytes(block.hash))
        return IntakeResult(Outcome.IMPORTED, block)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
