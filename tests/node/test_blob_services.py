"""Blob withholding and the blob store budget, on a real in-process node through the
pole_* handlers (no HTTP: the handlers and the services are the code under test)."""
from __future__ import annotations

import pytest
from eth_utils import keccak

from miner.messages import Release
from pole_chain.node.node import Node
from pole_chain.rpc import pole_api
from pole_chain.rpc.dispatch import LIMIT_EXCEEDED, RESOURCE_NOT_FOUND, RpcError
from pole_chain.rpc.filters import FilterStore
from pole_chain.rpc.formatting import hex_data
from pole_chain.rpc.server import RpcContext
from tests.chain.conftest import post_task_tx
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID

#: post_task_tx names these digests: every task it posts shares one test-set commitment.
TEST_SET, DATASET, SPEC = b"test set", b"dataset", b"model"


def context(node: Node) -> RpcContext:
    return RpcContext(node=node, filters=FilterStore(node))


def post_task(node: Node, account_index: int, reward: int) -> None:
    tx = post_task_tx(node.chain, reward=reward, time_limit=600, account_index=account_index)
    node.submit_raw_transaction(tx.encode())  # automine: the task is open on return


def release_task_1(ctx: RpcContext, admitted: tuple[bytes, ...] = ()) -> None:
    node = ctx.node
    best = node.tasks.best()
    assert best.task_id == 1  # task 1 is the best: its anchor names the release
    release = Release.sign(
        chain_id=CHAIN_ID, task_id=1, anchor_hash=best.anchor.hash, test_set_digest=keccak(TEST_SET),
        admitted=admitted, private_key=dev_accounts()[0].key,
    )
    assert pole_api.pole_release(ctx, release.encode()) is True


def test_a_copied_commitment_cannot_keep_a_released_test_set_withheld():
    with Node(None, dev=True) as node:
        ctx = context(node)
        post_task(node, 0, reward=10**18)  # the victim, task 1
        post_task(node, 1, reward=10**9)  # the copycat, task 2: same test-set commitment
        tasks = node.tasks.all()
        assert [t.test_set_commitment for t in tasks] == [keccak(TEST_SET)] * 2
        assert all(t.is_open for t in tasks)
        digest = node.blobs.put(TEST_SET)

        with pytest.raises(RpcError, match="withheld until its release") as caught:
            pole_api.pole_get_blob(ctx, digest)
        assert caught.value.code == RESOURCE_NOT_FOUND

        release_task_1(ctx)
        assert node.tasks.get(2).is_open  # the copycat is open and never released
        assert pole_api.pole_get_blob(ctx, digest) == hex_data(TEST_SET)


def test_unnamed_blobs_expire_and_what_tasks_and_releases_name_is_kept():
    with Node(None, dev=True, blob_lifetime=0) as node:
        ctx = context(node)
        post_task(node, 0, reward=10**18)
        for blob in (DATASET, SPEC, TEST_SET, b"junk"):
            pole_api.pole_put_blob(ctx, blob)
        assert node.blobs.expire() == [keccak(b"junk")]  # lifetime 0: nothing names it
        assert not node.blobs.has(keccak(b"junk"))
        named = [keccak(blob) for blob in (DATASET, SPEC, TEST_SET)]
        assert all(node.blobs.has(d) for d in named)  # the open task names them
        assert not any(node.blobs.is_kept(d) for d in named)

        model = pole_api.pole_reveal_model(ctx, b"some model", b"\x42" * 20, b"\x00" * 32)
        release_task_1(ctx, admitted=(bytes.fromhex(model[2:]),))
        assert all(node.blobs.is_kept(d) for d in named)  # a release keeps them for good
        assert node.blobs.is_kept(keccak(b"some model"))  # and the models it admits
        node.blobs.expire()
        assert node.solutions.model_for(bytes.fromhex(model[2:])) == b"some model"
        not_admitted = pole_api.pole_reveal_model(ctx, b"other model", b"\x42" * 20, b"\x00" * 32)
        node.blobs.expire()
        assert node.solutions.model_for(bytes.fromhex(not_admitted[2:])) is None


def test_a_full_blob_store_answers_limit_exceeded_with_the_figures():
    with Node(None, dev=True, blob_budget=1000) as node:
        ctx = context(node)
        pole_api.pole_put_blob(ctx, b"\x01" * 600)
        with pytest.raises(RpcError) as caught:
            pole_api.pole_put_blob(ctx, b"\x02" * 500)
        assert caught.value.code == LIMIT_EXCEEDED
        assert "blob store is full: 600 of 1000 bytes used, a blob of 500 bytes" in str(caught.value)
        with pytest.raises(RpcError) as caught:
            pole_api.pole_reveal_model(ctx, b"\x03" * 500, b"\x42" * 20, b"\x00" * 32)
        assert caught.value.code == LIMIT_EXCEEDED
