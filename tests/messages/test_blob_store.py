"""Content-addressed blob store: persistence, corruption, atomic writes, size limit."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from eth_utils import keccak

from pole_chain.node.blob_store import DEFAULT_MAX_BLOB_SIZE, BlobNotFound, BlobStore, BlobTooLarge


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path: Path) -> BlobStore:
    return BlobStore(None if request.param == "memory" else tmp_path / "blobs")


def blob_file(root: Path, digest: bytes) -> Path:
    return root / digest.hex()[:2] / digest.hex()


def test_put_get_has(store: BlobStore) -> None:
    data = b"model weights"
    digest = store.put(data)
    assert digest == keccak(data)
    assert store.has(digest)
    assert store.get(digest) == data
    assert store.put(data) == digest  # idempotent


def test_empty_blob_is_a_blob(store: BlobStore) -> None:
    assert store.get(store.put(b"")) == b""


def test_missing_blob(store: BlobStore) -> None:
    digest = keccak(b"never stored")
    assert not store.has(digest)
    with pytest.raises(BlobNotFound, match=digest.hex()):
        store.get(digest)


def test_digest_must_be_32_bytes(store: BlobStore) -> None:
    with pytest.raises(ValueError):
        store.get(b"\x00" * 31)
    with pytest.raises(ValueError):
        store.has(keccak(b"x").hex())  # type: ignore[arg-type]


def test_size_limit(store: BlobStore) -> None:
    assert store.max_size == DEFAULT_MAX_BLOB_SIZE
    small = BlobStore(store.root, max_size=10)
    small.put(b"x" * 10)
    with pytest.raises(BlobTooLarge, match="11 bytes, limit 10"):
        small.put(b"x" * 11)
    assert not small.has(keccak(b"x" * 11))


def test_default_limit_is_16_mib() -> None:
    store = BlobStore(None)
    store.put(b"\x00" * DEFAULT_MAX_BLOB_SIZE)
    with pytest.raises(BlobTooLarge):
        store.put(b"\x00" * (DEFAULT_MAX_BLOB_SIZE + 1))


def test_persists_across_instances(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    digest = BlobStore(root).put(b"test set")
    reopened = BlobStore(root)
    assert reopened.has(digest)
    assert reopened.get(digest) == b"test set"
    assert blob_file(root, digest).read_bytes() == b"test set"


def test_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    for i in range(20):
        store.put(i.to_bytes(4, "big"))
    names = [path.name for path in tmp_path.rglob("*") if path.is_file()]
    assert len(names) == 20
    assert not any(name.startswith(".tmp-") for name in names)


def test_corrupted_blob_is_missing_removed_and_logged_once(tmp_path: Path, caplog) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"dataset bytes")
    blob_file(tmp_path, digest).write_bytes(b"dataset bytez")  # bit rot
    caplog.set_level(logging.WARNING, logger="pole_chain.node.blob_store")
    for _ in range(3):
        with pytest.raises(BlobNotFound):
            store.get(digest)
    assert not blob_file(tmp_path, digest).exists()
    assert not store.has(digest)
    warnings = [record for record in caplog.records if "corrupted" in record.getMessage()]
    assert len(warnings) == 1
    assert store.put(b"dataset bytes") == digest  # fetched again from a peer
    assert store.get(digest) == b"dataset bytes"


def test_truncated_blob_is_missing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"a model that got cut short")
    blob_file(tmp_path, digest).write_bytes(b"a model")
    with pytest.raises(BlobNotFound):
        BlobStore(tmp_path).get(digest)


def test_put_repairs_a_corrupted_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"spec")
    blob_file(tmp_path, digest).write_bytes(b"junk")
    assert store.put(b"spec") == digest
    assert blob_file(tmp_path, digest).read_bytes() == b"spec"


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    """A crash between writing and renaming never leaves a (partial) blob under its name."""
    store = BlobStore(tmp_path)

    def crash(*args: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.put(b"never lands")
    monkeypatch.undo()
    assert not store.has(keccak(b"never lands"))
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []


def test_concurrent_puts_and_gets(store: BlobStore) -> None:
    blobs = [bytes([i]) * (1000 + i) for i in range(16)]
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for step in range(40):
                data = blobs[(offset + step) % len(blobs)]
                digest = store.put(data)
                assert store.get(digest) == data
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(store.get(keccak(data)) == data for data in blobs)
