"""Sealing in two halves over real HTTP: the node builds, the miner checks and signs, the node
imports (pole_buildBlock, pole_submitBlock), and web3.py reads the signed block unchanged.

The node runs in this process with every structural PoLe rule but no model evaluation (that
is tests/mining's real-process loop, which signs the same way); the JSON-RPC server, the
HTTP transport and web3's HTTPProvider are the real ones.
"""
from __future__ import annotations

import dataclasses

import pytest
import rlp
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import Web3RPCError

from miner.mining import BadNodeAnswer, SealAsked, sign_built_block
from miner.pole_module import attach_pole, error_message
from pole_chain.chain.block_production import sign_pole_block
from pole_chain.node.node import Node
from pole_chain.rpc.server import RpcServer
from tests.chain.conftest import address_of, miner_key, post_task_tx, sign
from vm_hooks.seal import read_block_seal, seal_signer, signing_hash
from vm_hooks.vm import PoLePragueVM

MINER_KEY, THIEF_KEY = miner_key(b"rpc signer"), miner_key(b"rpc thief")


class AcceptingVerifier:
    """Model evaluation is the miner package's part; every other seal rule still runs."""

    def verify(self, *_seal_and_task: object) -> None:
        return None


@pytest.fixture
def served():
    """A node with task 1 open, behind its real JSON-RPC server; a Web3 on HTTP."""
    with Node(None, dev=False, verifier=AcceptingVerifier()) as node:
        node.submit_raw_transaction(post_task_tx(node.chain, reward=10**18, time_limit=600).encode())
        assert node.miners.seal_idle_block()  # posts the task
        server = RpcServer(node, port=0)
        server.start()
        try:
            yield node, attach_pole(Web3(Web3.HTTPProvider(server.url)))
        finally:
            server.stop()


def asked(w3: Web3, **changes: object) -> SealAsked:
    seal = SealAsked(
        parent_hash=bytes(w3.eth.get_block("latest")["hash"]),
        coinbase=address_of(MINER_KEY),
        task_id=1,
        commitment=keccak(b"model"),
        train_bps=9_500,
        test_bps=9_000,
        release_digest=keccak(b"release"),
    )
    return dataclasses.replace(seal, **changes)


def decoded(encoded: bytes):
    return rlp.decode(encoded, sedes=PoLePragueVM.get_block_class())


def test_a_block_built_signed_and_submitted_is_read_by_web3(served):
    node, w3 = served
    transfer = sign(node.chain, {"to": b"\x66" * 20, "value": 7, "nonce": 1})
    assert w3.eth.send_raw_transaction(transfer.encode()) == transfer.hash
    seal = asked(w3)
    built = w3.pole.build_block(**vars(seal))
    unsigned = decoded(built["block"])
    assert [tx.hash for tx in unsigned.transactions] == [transfer.hash]  # the pool's
    assert built["signingHash"] == signing_hash(unsigned.header)
    assert unsigned.header.parent_beacon_block_root == unsigned.header.requests_hash == bytes(32)
    assert w3.eth.get_block("latest")["hash"] == seal.parent_hash  # nothing stored yet

    block_hash = w3.pole.submit_block(sign_built_block(built, seal, MINER_KEY))
    block = w3.eth.get_block(block_hash)  # web3's own formatters, no middleware
    assert block["hash"] == block_hash == w3.eth.get_block("latest")["hash"]
    root, requests_hash = bytes(block["parentBeaconBlockRoot"]), bytes(block["requestsHash"])
    assert root != bytes(32) and requests_hash != bytes(32)
    sealed = read_block_seal(block)
    assert sealed.miner == address_of(MINER_KEY) and sealed.signature == root + requests_hash
    assert sealed.task_id == 1 and sealed.test_bps == 9_000
    assert [bytes(tx) for tx in block["transactions"]] == [transfer.hash]
    stored = node.reader.header(block_hash)
    assert seal_signer(stored) == address_of(MINER_KEY)
    assert node.tasks.get(1).result.winner == address_of(MINER_KEY)


def test_a_seal_signed_by_another_key_is_refused_over_rpc(served):
    _node, w3 = served
    seal = asked(w3)
    built = w3.pole.build_block(**vars(seal))
    stolen = sign_pole_block(decoded(built["block"]), THIEF_KEY)
    with pytest.raises(Web3RPCError) as refused:
        w3.pole.submit_block(rlp.encode(stolen))
    assert "PoLe block signed by " in error_message(refused.value)
    assert f"its coinbase is {Web3.to_checksum_address(seal.coinbase)}" in error_message(refused.value)
    assert w3.eth.get_block("latest")["hash"] == seal.parent_hash


def test_an_unsigned_block_is_refused_over_rpc(served):
    _node, w3 = served
    seal = asked(w3)
    built = w3.pole.build_block(**vars(seal))
    with pytest.raises(Web3RPCError) as refused:
        w3.pole.submit_block(built["block"])
    assert "seal signature r must be in [1, n)" in error_message(refused.value)


#: A field of the seal the miner asked for, changed: the block the node built is then not it.
OTHER_SEALS = [
    {"test_bps": 9_100},
    {"train_bps": 9_400},
    {"task_id": 2},
    {"commitment": keccak(b"another model")},
    {"release_digest": keccak(b"another release")},
    {"coinbase": b"\x01" * 20},
    {"parent_hash": keccak(b"another parent")},
]


def test_the_miner_signs_only_the_block_it_asked_for(served):
    _node, w3 = served
    seal = asked(w3)
    built = w3.pole.build_block(**vars(seal))
    for change in OTHER_SEALS:
        with pytest.raises(BadNodeAnswer, match="the built block is not the seal asked for"):
            sign_built_block(built, dataclasses.replace(seal, **change), MINER_KEY)
    with pytest.raises(BadNodeAnswer, match="signing hash is not the built header's"):
        sign_built_block({**built, "signingHash": keccak(b"something else")}, seal, MINER_KEY)
    with pytest.raises(BadNodeAnswer, match="the built block does not decode"):
        sign_built_block({**built, "block": b"\xc0"}, seal, MINER_KEY)
    assert seal_signer(decoded(sign_built_block(built, seal, MINER_KEY)).header) == seal.coinbase
