"""An exception no rule raises is a bug in the node, not a verdict on the block.

A node whose evaluator crashes must neither store the block nor remember it as invalid (or
as valid): once the bug is fixed the very same block imports, so a bug cannot split one node
from the others. The node logs it loudly, once, and the RPC answers an internal error, not
the "seal rejected" or "invalid block" answer. The bug is simulated in the real
ModelSealVerifier's evaluation with monkeypatch: a plain ValueError, the kind of exception
the verifier used to turn into "invalid block".
"""
from __future__ import annotations

import logging

import pytest
import rlp
from eth_account import Account
from eth_keys import keys
from eth_utils import ValidationError, encode_hex, keccak

import miner.seal_verifier as seal_verifier
from miner.datasets import encode_dataset
from miner.integer_model import encode_model
from miner.messages import Release
from miner.model_spec import model_spec_canonical_bytes
from miner.sml import sml_for
from miner.training import train_model
from pole_chain.chain.block_production import build_block, next_timestamp, sign_pole_block
from pole_chain.node.block_import import NodeBug
from pole_chain.node.node import Node, SealRequest
from pole_chain.rpc.dispatch import INTERNAL_ERROR, Dispatcher
from pole_chain.rpc.filters import FilterStore
from pole_chain.rpc.server import METHOD_TABLES, RpcContext
from vm_hooks.params import CHAIN_ID, REGISTRY_ADDRESS
from vm_hooks.registry_calls import encode_call
from vm_hooks.seal import Seal, header_fields

from .conftest import MIN_TRAIN_BPS, MINER, POSTER, address


def evaluator_bug(*_args: object) -> int:
    raise ValueError("evaluator bug: shapes (512,64) and (48,10) not aligned")


def valid_seals(chain, header):
    return chain.get_vm_class(header).consensus_class._valid_seals


def test_chain_import_lets_an_evaluator_bug_raise_and_forgets_the_block(height, monkeypatch):
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.anchor.hash)
    release = height.release([commitment])
    height.book.add_release(release, height.task)
    fields = header_fields(
        Seal.pole(height.train_bps, height.test_bps, release.digest),
        miner=address(MINER), task_id=1, commitment=commitment,
    )
    block = build_block(height.chain, [], fields, next_timestamp(height.chain, None)).block
    block = sign_pole_block(block, keys.PrivateKey(MINER.key))
    head = height.chain.get_canonical_head()

    monkeypatch.setattr(seal_verifier, "evaluate_integer_model", evaluator_bug)
    with pytest.raises(ValueError, match="evaluator bug") as raised:
        height.chain.import_block(block)
    assert not isinstance(raised.value, ValidationError)  # no verdict on the block
    assert not height.chain.chaindb.header_exists(block.hash)
    assert block.hash not in valid_seals(height.chain, block.header)
    assert height.chain.get_canonical_head() == head

    monkeypatch.undo()
    height.chain.import_block(block)
    assert height.chain.get_canonical_head() == block.header


# -- the node and its RPC ------------------------------------------------------------------


def dev_node_with_task(trained) -> Node:
    """A dev node holding the task's data, with the task posted in block 1."""
    _digits, train, test, spec = trained
    node = Node(None, dev=True)
    for blob in (encode_dataset(train), encode_dataset(test), model_spec_canonical_bytes(spec)):
        node.blobs.put(blob)
    return node


def post_task(node: Node, trained) -> None:
    _digits, train, test, spec = trained
    data = encode_call("post_task", [
        keccak(model_spec_canonical_bytes(spec)), keccak(encode_dataset(train)),
        keccak(encode_dataset(test)), MIN_TRAIN_BPS, 3_600, 1,
    ])
    signed = Account.sign_transaction({
        "to": REGISTRY_ADDRESS, "value": 10**18, "nonce": 0, "data": data, "gas": 1_000_000,
        "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "chainId": CHAIN_ID, "type": 2,
    }, POSTER.key)
    node.submit_raw_transaction(bytes(signed.raw_transaction))


def hand_in_solution(node: Node, model_blob: bytes, test_blob: bytes) -> Release:
    """What the miner and the poster give every node: the revealed model and the release."""
    parent = node.reader.head()
    commitment = node.solutions.reveal_model(model_blob, address(MINER), parent.hash)
    release = Release.sign(
        chain_id=CHAIN_ID, task_id=1, anchor_hash=parent.hash, test_set_digest=keccak(test_blob),
        admitted=[commitment], private_key=POSTER.key,
    )
    node.solutions.add_release(release, node.tasks.best())
    return release


def rpc(node: Node, method: str, *params: object) -> dict:
    context = RpcContext(node=node, filters=FilterStore(node))
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    return Dispatcher(context, METHOD_TABLES, dev=True).handle_request(request)


def bug_records(caplog) -> list:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]


def test_a_node_answers_an_evaluator_bug_with_an_internal_error(trained, monkeypatch, caplog):
    _digits, train, test, _spec = trained
    producer, follower = dev_node_with_task(trained), dev_node_with_task(trained)
    try:
        post_task(producer, trained)
        task_block = producer.reader.block(producer.reader.head())
        follower.import_block(rlp.encode(task_block))
        parent = producer.reader.head()
        sml = sml_for(parent.hash, address(MINER), train.d)
        result = train_model(_spec, train, sml, target_train_bps=9_800, time_limit_s=60, seed=1)
        model_blob = encode_model(result.integer_model)
        releases = [hand_in_solution(n, model_blob, encode_dataset(test)) for n in (producer, follower)]
        assert releases[0] == releases[1]
        request = SealRequest(
            coinbase=address(MINER), task_id=1,
            model_commitment=releases[0].admitted[0], train_bps=result.train_bps,
            test_bps=seal_verifier.evaluate_integer_model(result.integer_model, sml, test),
            release_digest=releases[0].digest,
        )

        monkeypatch.setattr(seal_verifier, "evaluate_integer_model", evaluator_bug)
        with caplog.at_level(logging.ERROR):
            with pytest.raises(NodeBug, match="evaluator bug"):
                producer.build_pole_block(request)
        assert producer.reader.head() == parent
        assert len(bug_records(caplog)) == 1
        monkeypatch.undo()
        built = producer.build_pole_block(request)
        signed = sign_pole_block(built.block, keys.PrivateKey(MINER.key))
        pole_hash = producer.import_block(rlp.encode(signed))
        pole_block = producer.reader.block(producer.reader.head())
        assert pole_block.hash == pole_hash

        caplog.clear()
        monkeypatch.setattr(seal_verifier, "evaluate_integer_model", evaluator_bug)
        with caplog.at_level(logging.ERROR):
            answer = rpc(follower, "pole_submitBlock", encode_hex(rlp.encode(pole_block)))
        assert answer["error"]["code"] == INTERNAL_ERROR
        assert "evaluator bug" in answer["error"]["message"]
        assert len(bug_records(caplog)) == 1  # the node's, not the RPC layer's as well
        assert not follower.reader.has_header(pole_hash)
        assert pole_hash not in valid_seals(follower.chain, pole_block.header)

        monkeypatch.undo()
        assert rpc(follower, "pole_submitBlock", encode_hex(rlp.encode(pole_block)))["result"] == (
            encode_hex(pole_hash)
        )
        assert follower.reader.head() == pole_block.header
    finally:
        producer.close()
        follower.close()
