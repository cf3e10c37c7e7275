"""BlockIntake's classification of a peer's PoLe block before import (docs/NETWORK.md): its
header's seal rules first, so a forged seal is INVALID even when the data is missing (a
forgery is never held pending nor fetched for), then DATA_MISSING without the node lock,
DEFERRED for gossip (imported off the validator), and an import once the data is here.
Two real in-memory nodes with every structural PoLe rule; model evaluation is left out."""
from __future__ import annotations

import rlp
from eth_utils import keccak

from pole_chain.chain.block_production import produce_pole_block, sign_pole_block
from pole_chain.node.block_intake import BlockIntake, Outcome
from pole_chain.node.node import Node
from tests.chain.conftest import miner_key, post_task_tx
from tests.node.test_pole_signing import AcceptingVerifier

MINER_KEY, THIEF_KEY = miner_key(b"intake signer"), miner_key(b"intake thief")


def test_a_forged_seal_is_invalid_before_any_data_is_asked_for():
    with Node(None, dev=False, verifier=AcceptingVerifier()) as producer, \
            Node(None, dev=False, verifier=AcceptingVerifier()) as follower:
        producer.submit_raw_transaction(post_task_tx(producer.chain, reward=10**18, time_limit=600).encode())
        assert producer.miners.seal_idle_block()  # posts task 1, which anchors after it
        with producer.lock:
            follower.import_block(rlp.encode(producer.reader.block(producer.reader.head())))
            block = produce_pole_block(
                producer.chain, [], signer=MINER_KEY, task_id=1, model_commitment=keccak(b"m"),
                train_bps=9_500, test_bps=9_000, release_digest=keccak(b"r"),
            ).block
        genuine, forged = rlp.encode(block), rlp.encode(sign_pole_block(block, THIEF_KEY))
        missing = BlockIntake(follower.importer, follower.reader, follower.lock,
                              lacks_data=lambda block: True)
        assert missing.take(forged).outcome is Outcome.INVALID
        assert missing.take(forged, defer_pole=True).outcome is Outcome.INVALID
        assert missing.take(genuine).outcome is Outcome.DATA_MISSING
        here = BlockIntake(follower.importer, follower.reader, follower.lock)
        assert here.take(genuine, defer_pole=True).outcome is Outcome.DEFERRED
        assert here.take(forged).outcome is Outcome.INVALID  # the import's own verdict
        assert here.take(genuine).outcome is Outcome.IMPORTED
        assert here.take(genuine).outcome is Outcome.KNOWN
