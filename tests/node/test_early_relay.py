"""EarlyRelay: which PoLe blocks gossip relays on their header's word (node/early_relay.py),
and the verdicts the gossip sink gives them.

A real in-memory node holds a task and the poster's release of it; real signed PoLe blocks
cite that release (or not) and a commitment it admits (or not). Model evaluation is left
out: the rule looks at nothing but the header and the release."""
from __future__ import annotations

import functools

import pytest
import rlp
from eth_typing import Address
from eth_utils import keccak

from miner.messages import Release
from pole_chain.chain.block_production import build_pole_block, sign_pole_block
from pole_chain.net import Verdict
from pole_chain.node.block_data import PendingBlocks, lacks_block_data
from pole_chain.node.block_intake import BlockIntake
from pole_chain.node.early_relay import MAX_PER_COMMITMENT, EarlyRelay
from pole_chain.node.gossip_sink import GossipSink
from pole_chain.node.node import Node
from tests.chain.conftest import miner_key, post_task_tx
from tests.node.test_pole_signing import AcceptingVerifier
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID

MINER_KEY, THIEF_KEY = miner_key(b"early relay signer"), miner_key(b"early relay thief")
ADMITTED, STRANGER = keccak(b"admitted model"), keccak(b"a model nobody admitted")


class TaskNode:
    """A node with task 1 open, the poster's release of it (stored or not), and siblings."""

    def __init__(self, node: Node) -> None:
        self.node = node
        node.submit_raw_transaction(post_task_tx(node.chain, reward=10**18, time_limit=600).encode())
        assert node.miners.seal_idle_block()  # task 1 is posted, and anchors at this block
        self.task = node.tasks.best()
        node.blobs.put(b"test set")
        self.release = Release.sign(
            chain_id=CHAIN_ID, task_id=1, anchor_hash=self.task.anchor.hash,
            test_set_digest=keccak(b"test set"), admitted=(ADMITTED,),
            private_key=dev_accounts()[0].key,
        )

    def store_release(self) -> None:
        with self.node.lock:
            assert self.node.solutions.add_release(self.release, self.task)

    def block(self, commitment: bytes, train_bps: int, release_digest: bytes | None = None):
        """A signed PoLe block on the head, built and not stored: every one is a sibling."""
        with self.node.lock:
            built = build_pole_block(
                self.node.chain, [], coinbase=Address(MINER_KEY.public_key.to_canonical_address()),
                task_id=1, model_commitment=commitment, train_bps=train_bps, test_bps=9_000,
                release_digest=release_digest or self.release.digest,
            ).block
        return sign_pole_block(built, MINER_KEY)


@pytest.fixture
def task_node():
    with Node(None, dev=False, verifier=AcceptingVerifier()) as node:
        yield TaskNode(node)


def test_only_blocks_citing_a_held_release_that_admits_them_are_relayed_and_a_few_per_model(
    task_node,
):
    node, block = task_node.node, task_node.block
    relay = EarlyRelay(node.solutions)
    first = block(ADMITTED, 9_500)
    assert not relay.admit(first)  # the release is not held here yet
    assert not relay.relayed(first)

    task_node.store_release()
    assert not relay.admit(block(STRANGER, 9_500))  # the release does not admit it
    assert not relay.admit(block(ADMITTED, 9_500, release_digest=keccak(b"other")))

    copies = [first] + [block(ADMITTED, 9_501 + i) for i in range(MAX_PER_COMMITMENT)]
    assert len({b.hash for b in copies}) == len(copies)
    assert [relay.admit(b) for b in copies] == [True] * MAX_PER_COMMITMENT + [False]
    assert relay.admit(first)  # the same block again (from another peer) still is
    assert [relay.relayed(b) for b in copies] == [True] * MAX_PER_COMMITMENT + [False]


class NoPeers:
    """A fetcher whose peers never have the data (the queue is not started here anyway)."""

    def fetch_for(self, block) -> bool:
        return False


def test_gossip_relays_an_admitted_block_before_import_and_holds_every_genuine_one(task_node):
    node = task_node.node
    task_node.store_release()
    sink = GossipSink(
        intake=BlockIntake(node.importer, node.reader, node.lock,
                           lacks_data=functools.partial(lacks_block_data, node.solutions)),
        transactions=node.transactions, solutions=node.solutions, key_book=node.key_book,
        tasks=node.tasks, blobs=node.blobs, lock=node.lock, chain_id=CHAIN_ID,
    )
    sink.pending = PendingBlocks(NoPeers(), lambda raw: None)
    admitted = task_node.block(ADMITTED, 9_500)
    stranger = task_node.block(STRANGER, 9_500)
    forged = sign_pole_block(task_node.block(ADMITTED, 9_400), THIEF_KEY)

    assert sink.on_block(rlp.encode(admitted)) is Verdict.ACCEPT  # its model is not here
    assert sink.on_block(rlp.encode(stranger)) is Verdict.IGNORE  # imported first, then published
    assert sink.on_block(rlp.encode(forged)) is Verdict.REJECT
    assert len(sink.pending) == 2  # both genuine blocks wait for their data, the forgery not
    assert not node.reader.has_header(admitted.hash)  # relayed, not imported: that comes later
