"""Content-addressed storage for the large things blocks only refer to by hash.

Datasets, model blobs, test sets and model specs live off chain; the chain and the messages
carry their keccak digests. A node keeps them here and serves them to peers by digest.

Because a blob's name is its hash, a blob is either exactly right or absent: writes are
atomic (temp file, fsync, rename), so a crash never leaves a truncated blob under its final
name, and every read re-hashes the content, so a file corrupted on disk is dropped and
reported missing (to be fetched again) instead of being served.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

from eth_utils import keccak

DEFAULT_MAX_BLOB_SIZE = 16 * 1024 * 1024

logger = logging.getLogger(__name__)


class BlobNotFound(LookupError):
    """No intact blob with this digest is stored."""


class BlobTooLarge(ValueError):
    """A blob exceeds the store's size limit."""


class BlobStore:
    """Blobs keyed by keccak(data); on disk under `root`, or in memory when root is None.

    Layout on disk: root/<first 2 hex digits>/<64 hex digits>, so no directory grows huge.
    Safe to share between threads; `has()` is a cheap existence check, `get()` is the
    authority (it verifies the content).
    """

    def __init__(self, root: Path | str | None = None, max_size: int = DEFAULT_MAX_BLOB_SIZE):
        self.root = Path(root) if root is not None else None
        self.max_size = max_size
        self._memory: dict[bytes, bytes] = {}
        self._lock = threading.Lock()
        self._reported_corrupt: set[bytes] = set()  # so each corruption is logged once
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> bytes:
        """Store `data` and return its digest; storing the same bytes twice is a no-op."""
        data = bytes(data)
        if len(data) > self.max_size:
            raise BlobTooLarge(f"blob is {len(data)} bytes, limit {self.max_size}")
        digest = keccak(data)
        with self._lock:
            if self.root is None:
                self._memory[digest] = data
            elif self._read_intact(digest) is None:
                self._write_atomically(self._path(digest), data)
                self._reported_corrupt.discard(digest)
        return digest

    def get(self, digest: bytes) -> bytes:
        """The blob whose keccak is `digest`; raises BlobNotFound if absent or corrupted."""
        _check_digest(digest)
        with self._lock:
            data = self._memory.get(digest) if self.root is None else self._read_intact(digest)
        if data is None:
            raise BlobNotFound(f"no blob 0x{digest.hex()}")
        return data

    def has(self, digest: bytes) -> bool:
        """Whether a blob is stored under `digest` (content is verified on get, not here)."""
        _check_digest(digest)
        with self._lock:
            if self.root is None:
                return digest in self._memory
            return self._path(digest).is_file()

    def _path(self, digest: bytes) -> Path:
        assert self.root is not None
        name = digest.hex()
        return self.root / name[:2] / name

    def _read_intact(self, digest: bytes) -> bytes | None:
        """The file's content if it hashes to `digest`; a corrupted file is removed."""
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if keccak(data) == digest:
            return data
        if digest not in self._reported_corrupt:
            self._reported_corrupt.add(digest)
            logger.warning("blob 0x%s is corrupted on disk; removing it", digest.hex())
        try:
            path.unlink(missing_ok=True)  # so it reads as missing and can be fetched again
        except OSError as error:
            logger.debug("could not remove corrupted blob %s: %s", path, error)
        return None

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        """Write to a temp file in the same directory, fsync, then rename over `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(descriptor, "wb") as temp:
                temp.write(data)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)  # make the rename itself durable


def _check_digest(digest: bytes) -> None:
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise ValueError(f"a blob digest is 32 bytes, got {digest!r}")


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform (e.g. Windows); the rename still happened
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
