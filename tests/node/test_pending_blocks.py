"""PendingBlocks' schedule: a block is tried when it arrives, a failed one RETRY_INTERVAL later.

The fetcher here stands in for peers that do or do not have a block's data yet; the real
fetch over libp2p is exercised by tests/network/ (test_pole_task.py).
"""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from pole_chain.node import block_data
from pole_chain.node.block_data import PendingBlocks

WAIT = 30.0


class Peers:
    """Data for the blocks in `available`; `busy` holds a fetch until the test lets it go."""

    def __init__(self) -> None:
        self.available: set[bytes] = set()
        self.busy = threading.Event()
        self.release = threading.Event()
        self.attempts: list[bytes] = []
        self.tried = threading.Event()

    def fetch_for(self, block) -> bool:
        self.attempts.append(block.hash)
        found = block.hash in self.available  # what peers had when asked
        if block.hash == b"slow":
            self.busy.set()
            self.release.wait(WAIT)
        self.tried.set()
        return found


def block(name: bytes):
    return SimpleNamespace(hash=name, number=1)


@pytest.fixture
def queue(monkeypatch):
    monkeypatch.setattr(block_data, "RETRY_INTERVAL", 3600.0)  # a retry never comes in a test
    peers, imported = Peers(), []
    done = threading.Event()

    def on_ready(raw: bytes) -> None:
        imported.append(raw)
        done.set()

    pending = PendingBlocks(peers, on_ready)  # each test starts it
    yield pending, peers, imported, done
    peers.release.set()
    pending.stop()


def test_a_block_arriving_while_another_is_fetched_is_tried_at_once(queue):
    pending, peers, imported, done = queue
    pending.start()
    pending.add(block(b"slow"), b"slow block")  # its data is nowhere: it will wait for a retry
    assert peers.busy.wait(WAIT)
    peers.available.add(b"fast")
    pending.add(block(b"fast"), b"fast block")
    peers.release.set()
    assert done.wait(WAIT), "the new block waited for the failed one's retry"
    assert imported == [b"fast block"]
    assert peers.attempts == [b"slow", b"fast"]
    assert len(pending) == 1  # the slow one waits for its retry, an hour away


def test_a_block_whose_data_arrives_is_imported_once_and_forgotten(queue):
    pending, peers, imported, done = queue
    peers.available.add(b"here")
    pending.add(block(b"here"), b"raw")
    pending.add(block(b"here"), b"raw")  # the same block gossiped twice is held once
    pending.start()
    assert done.wait(WAIT)
    assert imported == [b"raw"] and len(pending) == 0



def test_a_block_whose_data_comes_by_gossip_is_tried_again_without_waiting_for_its_retry(queue):
    pending, peers, imported, done = queue
    pending.start()
    pending.add(block(b"late"), b"late block")  # relayed ahead of its model: not found yet
    assert peers.tried.wait(WAIT)
    assert not done.is_set()
    peers.available.add(b"late")  # the model arrived on the model topic
    pending.retry_now()
    assert done.wait(WAIT), "the block waited for its retry, an hour away"
    assert imported == [b"late block"] and peers.attempts == [b"late", b"late"]


def test_data_arriving_during_a_failing_fetch_is_not_lost_to_the_retry_interval(queue):
    pending, peers, imported, done = queue
    pending.start()
    pending.add(block(b"slow"), b"slow block")
    assert peers.busy.wait(WAIT)  # the fetch asked peers, who had nothing yet
    peers.available.add(b"slow")
    pending.retry_now()  # the model came meanwhile
    peers.release.set()  # the first fetch fails
    assert done.wait(WAIT), "the block waited for its retry, an hour away"
    assert imported == [b"slow block"] and peers.attempts == [b"slow", b"slow"]
