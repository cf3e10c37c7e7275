"""The node's key-value store: LevelDB (plyvel) behind py-evm's atomic-database API.

py-evm's ``AtomicDB`` applies a batch key by key, so a crash mid-commit could leave half a
block. Here every ``atomic_batch`` becomes one LevelDB write batch, so a block (its header,
score and canonical-head pointer) lands whole or not at all.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

import plyvel
from eth.abc import AtomicDatabaseAPI, AtomicWriteBatchAPI
from eth.db.atomic import AtomicDB, AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB, BaseDB


class _PlyvelBatchTarget(BaseDB):
    """Write target of a py-evm batch commit: collects writes into one plyvel batch."""

    def __init__(self, batch: "plyvel.WriteBatch") -> None:
        self._batch = batch

    def __getitem__(self, key: bytes) -> bytes:
        raise NotImplementedError("write-only batch target")

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._batch.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        self._batch.delete(key)

    def _exists(self, key: bytes) -> bool:
        raise NotImplementedError("write-only batch target")


class DatadirInUse(RuntimeError):
    """Another process holds the database's lock (LevelDB allows one writer per directory)."""


class LevelDB(BaseAtomicDB):
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = plyvel.DB(str(path), create_if_missing=True)
        except plyvel.IOError as exc:
            if "lock" not in str(exc):
                raise
            raise DatadirInUse(
                f"{path.parent} is in use by another node (its database lock is held); stop "
                "that node or choose another --datadir"
            ) from exc

    def __getitem__(self, key: bytes) -> bytes:
        value = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        if self._db.get(key) is None:
            raise KeyError(key)
        self._db.delete(key)

    def _exists(self, key: bytes) -> bool:
        return self._db.get(key) is not None

    @contextlib.contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        readable = _ReadThroughBatch(self)
        yield readable
        with self._db.write_batch(transaction=True) as plyvel_batch:
            readable.commit_to(_PlyvelBatchTarget(plyvel_batch))

    def close(self) -> None:
        self._db.close()
        del self._db  # free the handle now, not during interpreter shutdown


class _ReadThroughBatch(AtomicDBWriteBatch):
    """py-evm's readable write batch, committed into a plyvel batch instead of key by key."""

    def commit_to(self, target: BaseDB) -> None:
        self._diff().apply_to(target, apply_deletes=True)
        self._track_diff = None
        self._write_target_db = None


def open_database(datadir: Optional[Path]) -> AtomicDatabaseAPI:
    """LevelDB under ``datadir/chaindata``, or an in-memory database when None."""
    if datadir is None:
        return AtomicDB()
    return LevelDB(Path(datadir) / "chaindata")
