"""Content-addressed storage for the large things blocks only refer to by hash.

Datasets, model blobs, test sets and model specs live off chain; the chain and the messages
carry their keccak digests. A node keeps them here and serves them to peers by digest.

Because a blob's name is its hash, a blob is either exactly right or absent: writes are
atomic (temp file, fsync, rename), so a crash never leaves a truncated blob under its final
name, and every read re-hashes the content, so a file corrupted on disk is dropped and
reported missing (to be fetched again) instead of being served.

The budget (docs/RPC-POLE.md, "Blob store budget"): anyone may upload, so a blob is kept only
while something the protocol needs names it. `keep(digest)` marks a blob kept for good (the
solution book does so for releases, their test sets and datasets, and admitted models: what
an accepted PoLe block refers to); `still_needed` asks the node whether an open task names a
blob. Every other blob expires `unkept_lifetime` seconds after its upload. The total size of
the store is bounded: an upload that would pass `max_total_size` is refused with
BlobStoreFull, after expired blobs have made what room they can.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from eth_utils import encode_hex, keccak

DEFAULT_MAX_BLOB_SIZE = 16 * 1024 * 1024
#: The whole store, kept blobs included.
DEFAULT_MAX_TOTAL_SIZE = 4 * 1024 * 1024 * 1024
#: Seconds an upload nothing names stays (long enough to post the task that names it).
DEFAULT_UNKEPT_LIFETIME = 600.0
#: Marker files of kept blobs, one empty file per digest, beside the blobs' 2-hex folders.
KEPT_FOLDER = "kept"

logger = logging.getLogger(__name__)


class BlobNotFound(LookupError):
    """No intact blob with this digest is stored."""


class BlobLimitExceeded(ValueError):
    """An upload refused by the store's budget (JSON-RPC answers LIMIT_EXCEEDED)."""


class BlobTooLarge(BlobLimitExceeded):
    """A blob exceeds the store's size limit for one blob."""


class BlobStoreFull(BlobLimitExceeded):
    """The store holds `max_total_size` bytes; the message gives the figures."""


class BlobStore:
    """Blobs keyed by keccak(data); on disk under `root`, or in memory when root is None.

    Layout on disk: root/<first 2 hex digits>/<64 hex digits>, so no directory grows huge,
    and root/kept/<64 hex digits> marks a kept blob. Safe to share between threads; `has()`
    is a cheap existence check, `get()` is the authority (it verifies the content).
    """

    def __init__(
        self,
        root: Path | str | None = None,
        max_size: int = DEFAULT_MAX_BLOB_SIZE,
        *,
        max_total_size: int = DEFAULT_MAX_TOTAL_SIZE,
        unkept_lifetime: float = DEFAULT_UNKEPT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root) if root is not None else None
        self.max_size = max_size
        self.max_total_size = max_total_size
        self.unkept_lifetime = unkept_lifetime
        #: Asked, outside the store's lock, before an expired blob is removed (an open task
        #: may name it); the node plugs its task views in.
        self.still_needed: Callable[[bytes], bool] = lambda digest: False
        self._clock = clock
        self._memory: dict[bytes, bytes] = {}
        self._lock = threading.Lock()
        self._reported_corrupt: set[bytes] = set()  # so each corruption is logged once
        self._sizes: dict[bytes, int] = {}  # every stored blob
        self._unkept: dict[bytes, float] = {}  # stored blobs not kept -> when they arrived
        self._kept: set[bytes] = set()
        if self.root is not None:
            self._load_disk()

    # -- the budget ----------------------------------------------------------------------

    @property
    def total_size(self) -> int:
        """Bytes stored, kept blobs included."""
        with self._lock:
            return sum(self._sizes.values())

    def keep(self, digest: bytes) -> None:
        """Keep blob `digest` for good, stored now or arriving later (it never expires)."""
        _check_digest(digest)
        with self._lock:
            if digest in self._kept:
                return
            if self.root is not None:
                marker = self.root / KEPT_FOLDER / digest.hex()
                self._write_atomically(marker, b"")
            self._kept.add(digest)
            self._unkept.pop(digest, None)

    def is_kept(self, digest: bytes) -> bool:
        with self._lock:
            return digest in self._kept

    def expire(self) -> list[bytes]:
        """Remove the unkept blobs older than `unkept_lifetime` that nothing still needs."""
        now = self._clock()
        with self._lock:
            due = [d for d, since in self._unkept.items() if now - since >= self.unkept_lifetime]
        removable = [digest for digest in due if not self.still_needed(digest)]
        removed = []
        with self._lock:
            for digest in removable:
                since = self._unkept.get(digest)
                if since is not None and now - since >= self.unkept_lifetime:
                    self._remove(digest)
                    removed.append(digest)
        return removed

    # -- blobs ---------------------------------------------------------------------------

    def put(self, data: bytes) -> bytes:
        """Store `data` and return its digest; storing the same bytes twice is a no-op.

        Raises BlobTooLarge above `max_size`, BlobStoreFull when the store has no room.
        """
        data = bytes(data)
        if len(data) > self.max_size:
            raise BlobTooLarge(f"blob is {len(data)} bytes, limit {self.max_size}")
        digest = keccak(data)
        self.expire()
        with self._lock:
            if self._holds_intact(digest):
                if digest in self._unkept:
                    self._unkept[digest] = self._clock()  # uploaded again: its lifetime restarts
                return digest
            self._check_room(len(data))
            if self.root is None:
                self._memory[digest] = data
            else:
                self._write_atomically(self._path(digest), data)
                self._reported_corrupt.discard(digest)
            self._sizes[digest] = len(data)
            if digest not in self._kept:
                self._unkept[digest] = self._clock()
        return digest

    def get(self, digest: bytes) -> bytes:
        """The blob whose keccak is `digest`; raises BlobNotFound if absent or corrupted."""
        _check_digest(digest)
        with self._lock:
            data = self._memory.get(digest) if self.root is None else self._read_intact(digest)
        if data is None:
            raise BlobNotFound(f"no blob {encode_hex(digest)}")
        return data

    def has(self, digest: bytes) -> bool:
        """Whether a blob is stored under `digest` (content is verified on get, not here)."""
        _check_digest(digest)
        with self._lock:
            if self.root is None:
                return digest in self._memory
            return self._path(digest).is_file()

    # -- internals (callers hold self._lock) -------------------------------------------

    def _check_room(self, size: int) -> None:
        used = sum(self._sizes.values())
        if used + size > self.max_total_size:
            raise BlobStoreFull(
                f"blob store is full: {used} of {self.max_total_size} bytes used, a blob of "
                f"{size} bytes does not fit (blobs that no open task, release or accepted "
                f"block names expire {self.unkept_lifetime:g} s after upload)"
            )

    def _holds_intact(self, digest: bytes) -> bool:
        if self.root is None:
            return digest in self._memory
        return self._read_intact(digest) is not None

    def _remove(self, digest: bytes) -> None:
        if self.root is None:
            self._memory.pop(digest, None)
        else:
            self._path(digest).unlink(missing_ok=True)
        self._forget(digest)

    def _forget(self, digest: bytes) -> None:
        self._sizes.pop(digest, None)
        self._unkept.pop(digest, None)

    def _load_disk(self) -> None:
        """Index the blobs on disk: sizes, kept markers, and upload times of the others.

        A store written before the budget existed has no kept folder: everything it holds
        was accepted under the old rules and is kept, so no blob a block needs is lost.
        """
        assert self.root is not None
        kept_folder = self.root / KEPT_FOLDER
        legacy = self.root.is_dir() and not kept_folder.is_dir()
        kept_folder.mkdir(parents=True, exist_ok=True)
        self._kept = {bytes.fromhex(p.name) for p in kept_folder.iterdir() if _is_hex_name(p.name)}
        for folder in self.root.iterdir():
            if len(folder.name) != 2 or not folder.is_dir():
                continue
            for path in folder.iterdir():
                if not _is_hex_name(path.name):
                    continue
                digest, stat = bytes.fromhex(path.name), path.stat()
                self._sizes[digest] = stat.st_size
                if legacy:
                    self._write_atomically(kept_folder / path.name, b"")
                    self._kept.add(digest)
                elif digest not in self._kept:
                    self._unkept[digest] = stat.st_mtime

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
            self._forget(digest)
            return None
        if keccak(data) == digest:
            return data
        self._forget(digest)
        if digest not in self._reported_corrupt:
            self._reported_corrupt.add(digest)
            logger.warning("blob %s is corrupted on disk; removing it", encode_hex(digest))
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


def _is_hex_name(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


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
