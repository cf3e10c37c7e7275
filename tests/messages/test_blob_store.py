"""Content-addressed blob store: persistence, corruption, atomic writes, size limit."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest
from eth_utils import keccak

from pole_chain.node.blob_store import (
    DEFAULT_MAX_BLOB_SIZE,
    BlobLimitExceeded,
    BlobNotFound,
    BlobStore,
    BlobStoreFull,
    BlobTooLarge,
)


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


# -- the budget: kept blobs, expiry of the rest, a total bound -------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "disk"])
def root(request, tmp_path: Path) -> Path | None:
    return None if request.param == "memory" else tmp_path / "blobs"


def test_unkept_blobs_expire_after_their_lifetime(root) -> None:
    clock = Clock()
    store = BlobStore(root, unkept_lifetime=60, clock=clock)
    kept, needed, unkept = (store.put(data) for data in (b"release", b"dataset", b"upload"))
    store.keep(kept)
    store.still_needed = lambda digest: digest == needed  # an open task names it
    clock.now += 59
    assert store.expire() == []
    clock.now += 1
    assert store.expire() == [unkept]
    assert not store.has(unkept) and store.has(kept) and store.has(needed)
    assert store.total_size == len(b"release") + len(b"dataset")


def test_uploading_again_restarts_the_lifetime(root) -> None:
    clock = Clock()
    store = BlobStore(root, unkept_lifetime=60, clock=clock)
    store.put(b"upload")
    clock.now += 50
    store.put(b"upload")
    clock.now += 50
    assert store.expire() == []


def test_a_full_store_refuses_with_the_figures_after_expiry_made_room(root) -> None:
    clock = Clock()
    store = BlobStore(root, max_total_size=100, unkept_lifetime=60, clock=clock)
    store.keep(store.put(b"k" * 40))
    store.put(b"u" * 50)
    with pytest.raises(BlobStoreFull) as caught:
        store.put(b"n" * 20)
    assert "blob store is full: 90 of 100 bytes used, a blob of 20 bytes does not fit" in str(
        caught.value
    )
    assert isinstance(caught.value, BlobLimitExceeded)
    clock.now += 60
    store.put(b"n" * 20)  # the expired upload made room
    assert store.total_size == 60


def test_kept_marks_and_upload_times_survive_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store = BlobStore(root)
    kept, unkept = store.put(b"kept"), store.put(b"unkept")
    store.keep(kept)
    reopened = BlobStore(root, unkept_lifetime=3600)
    assert reopened.is_kept(kept) and not reopened.is_kept(unkept)
    assert reopened.total_size == len(b"kept") + len(b"unkept")
    assert reopened.expire() == []  # uploaded moments ago (file time)
    later = BlobStore(root, unkept_lifetime=3600, clock=lambda: time.time() + 3600)
    assert later.expire() == [unkept]
    assert later.has(kept)


def test_a_store_from_before_the_budget_keeps_what_it_holds(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    digest = keccak(b"old test set")
    blob_file(root, digest).parent.mkdir(parents=True)
    blob_file(root, digest).write_bytes(b"old test set")
    store = BlobStore(root, unkept_lifetime=0)
    assert store.is_kept(digest)
    assert store.expire() == [] and store.get(digest) == b"old test set"
