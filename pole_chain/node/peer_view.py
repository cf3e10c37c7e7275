"""What this node shows its peers: the `ChainView` the network answers requests from.

Canonical headers and blocks as RLP (status, header and block ranges), the total score fork
choice compares, blobs by digest and PoLe block data by release prefix and commitment. The
same rule as pole_getBlob holds for peers: a test set stays withheld until its release, so a
peer cannot read a task's answers early through the network either.
"""
from __future__ import annotations

from collections.abc import Sequence

import rlp

from pole_chain.net import ChainStatus
from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.locking import NodeLock
from pole_chain.node.solution_book import SolutionBook
from pole_chain.node.withholding import BlobWithholding


class NodeChainView:
    """ChainView over the node's reader, solution book and withholding rule."""

    def __init__(
        self,
        reader: ChainReader,
        lock: NodeLock,
        solutions: SolutionBook,
        withholding: BlobWithholding,
    ) -> None:
        self._reader = reader
        self._lock = lock
        self._solutions = solutions
        self._withholding = withholding
        self._genesis_hash: bytes | None = None

    def genesis_hash(self) -> bytes:
        """Hash of block 0 (read once: it never changes)."""
        if self._genesis_hash is None:
            with self._lock:
                self._genesis_hash = bytes(self._reader.canonical_header(0).hash)
        return self._genesis_hash

    def head(self) -> ChainStatus:
        """The canonical head and its total score, read under the lock (one consistent head)."""
        with self._lock:
            head = self._reader.head()
            score = self._reader.score(head) or 0
            return ChainStatus(self.genesis_hash(), bytes(head.hash), head.block_number, score)

    def headers(self, start: int, count: int) -> Sequence[bytes]:
        """Canonical headers start.. as RLP, fewer past the head."""
        with self._lock:
            last = min(start + count, self._reader.head().block_number + 1)
            return [rlp.encode(self._reader.canonical_header(n)) for n in range(start, last)]

    def blocks(self, start: int, count: int) -> Sequence[bytes]:
        """Canonical blocks start.. as RLP, fewer past the head."""
        with self._lock:
            last = min(start + count, self._reader.head().block_number + 1)
            return [
                rlp.encode(self._reader.block(self._reader.canonical_header(n)))
                for n in range(start, last)
            ]

    def blob(self, digest: bytes) -> bytes | None:
        """A held blob, except a test set still withheld before its release."""
        if self._withholding.withheld(digest):
            return None
        return self._solutions.blob(digest)

    def block_data(self, release_prefix: bytes, commitment: bytes) -> tuple[bytes, bytes]:
        """The release with this digest prefix and the model with this commitment, b"" if absent."""
        release = self._solutions.release_for_prefix(release_prefix)
        model = self._solutions.model_for(commitment)
        return (release.encode() if release is not None else b"", model or b"")
