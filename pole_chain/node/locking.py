"""The node's one lock, and whether the node is still open.

Every chain write (a produced, sealed or imported block, a dev revert) and every read that
must see one consistent head happens under this one re-entrant lock, so the services that
share the chain never interleave half-done work. LevelDB writes each block in one batch, so
a committed block survives a kill -9 and a restart resumes at the stored head.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class NodeClosed(RuntimeError):
    """A service was asked to write after the node closed its database."""


class NodeLock:
    """A re-entrant lock (`with node.lock:`) plus the node's closed flag."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.closed = False

    def __enter__(self) -> NodeLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lock for a chain write; raises NodeClosed once the node is closed."""
        with self._lock:
            if self.closed:
                raise NodeClosed("the node is closed")
            yield
