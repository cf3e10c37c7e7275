"""Blocks from outside: one dev node's blocks imported into another over JSON-RPC."""
from __future__ import annotations

import pytest
import rlp
from eth_utils import to_bytes

from pole_chain.node.node import BlockRejected, Node

from . import NodeProcess


@pytest.fixture(scope="module")
def producer():
    process = NodeProcess(None).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def follower():
    process = NodeProcess(None, "--block-time", "3600").start()  # never seals by itself
    yield process
    process.stop()


def test_follower_imports_the_producers_blocks(producer, follower):
    w3 = producer.web3()
    sender, recipient = w3.eth.accounts[:2]
    for value in (1, 2):
        w3.eth.send_transaction({"from": sender, "to": recipient, "value": value})
    for number in (1, 2):
        raw = producer.result("debug_getRawBlock", [hex(number)])
        assert follower.result("pole_submitBlock", [raw]) == producer.result(
            "eth_getBlockByNumber", [hex(number), False]
        )["hash"]
    assert follower.result("eth_blockNumber") == "0x2"
    assert follower.result("eth_getBalance", [w3.eth.accounts[1], "latest"]) == hex(
        w3.eth.get_balance(w3.eth.accounts[1])
    )
    # Importing a stored block again is a no-op.
    raw = producer.result("debug_getRawBlock", ["0x2"])
    assert follower.result("pole_submitBlock", [raw]) == w3.eth.get_block(2).hash.to_0x_hex()


def test_unknown_parent_and_tampered_blocks_are_rejected():
    producer, follower = Node(None, dev=True), Node(None, dev=True)
    try:
        first, second = producer.dev_controls.mine(2)
        with producer.lock:
            blocks = [producer.reader.block(producer.reader.header(h)) for h in (first, second)]
        with pytest.raises(BlockRejected, match="unknown parent"):
            follower.import_block(rlp.encode(blocks[1]))
        tampered = blocks[0].copy(header=blocks[0].header.copy(state_root=b"\x11" * 32))
        with pytest.raises(BlockRejected, match="invalid block #1"):
            follower.import_block(rlp.encode(tampered))
        with pytest.raises(BlockRejected, match="cannot decode block"):
            follower.import_block(to_bytes(hexstr="0xdeadbeef"))
        assert follower.import_block(rlp.encode(blocks[0])) == first
    finally:
        producer.close()
        follower.close()


class AcceptingVerifier:
    """Model evaluation is the miner's part; here every seal that passes the structural
    consensus rules is accepted, as in tests/chain."""

    def verify(self, header, seal, task, anchor_hash) -> None:
        return None


def seal_and_import(node, request, key):
    """The two halves of sealing, as a miner does them: build, sign, import."""
    import rlp

    from pole_chain.chain.block_production import sign_pole_block

    return node.import_block(rlp.encode(sign_pole_block(node.build_pole_block(request).block, key)))


def test_submit_pole_block_settles_the_task():
    from contracts import TASK_REGISTRY, load_artifact
    from eth_utils import to_checksum_address
    from web3 import Web3

    from vm_hooks.params import CHAIN_ID, REGISTRY_ADDRESS
    from vm_hooks.genesis import dev_accounts
    from pole_chain.node.node import SealRequest
    from tests.chain.conftest import address_of, miner_key

    poster, key = dev_accounts()[0], miner_key(b"block import")
    miner = address_of(key)
    registry = Web3().eth.contract(abi=load_artifact(TASK_REGISTRY).abi)
    digests = [b"\x01" * 32, b"\x02" * 32, b"\x03" * 32]
    data = registry.encode_abi("post_task", [*digests, 9000, 600, 1])
    node = Node(None, dev=True, verifier=AcceptingVerifier())
    try:
        node.submit_raw_transaction(poster.sign_transaction({
            "chainId": CHAIN_ID, "nonce": 0, "to": Web3.to_checksum_address(REGISTRY_ADDRESS),
            "value": 10**18, "data": data, "gas": 500_000,
            "maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9,
        }).raw_transaction)
        assert [task.task_id for task in node.tasks.all()] == [1]
        assert node.tasks.best().task_id == 1

        request = dict(coinbase=miner, model_commitment=b"\x07" * 32, train_bps=9500,
                       test_bps=9300, release_digest=b"\x08" * 32)
        with pytest.raises(BlockRejected, match="PoLe block refused"):  # task 2 does not exist
            node.build_pole_block(SealRequest(task_id=2, **request))
        block_hash = seal_and_import(node, SealRequest(task_id=1, **request), key)
        with node.lock:
            assert node.reader.head().hash == block_hash
            assert node.reader.state_at(node.reader.head()).get_balance(miner) >= 10**18
        [task] = node.tasks.all()
        assert task.status == 2 and to_checksum_address(task.result.winner) == to_checksum_address(miner)
        assert node.tasks.best() is None
    finally:
        node.close()


def test_a_better_sibling_sealed_later_returns_the_dropped_transactions_to_the_pool():
    from eth_utils import keccak

    from pole_chain.node.node import SealRequest
    from tests.chain.conftest import address_of, miner_key, post_task_tx, sign

    first_key, better_key = miner_key(b"first"), miner_key(b"better")

    node = Node(None, dev=False, verifier=AcceptingVerifier())
    try:
        node.submit_raw_transaction(post_task_tx(node.chain, reward=100, time_limit=600).encode())
        assert node.miners.seal_idle_block()
        parent = node.reader.head()
        transfer = sign(node.chain, {"to": b"\x33" * 20, "value": 5, "nonce": 1})
        node.submit_raw_transaction(transfer.encode())
        seal = dict(task_id=1, model_commitment=keccak(b"m"), train_bps=9000, release_digest=keccak(b"r"))
        first = seal_and_import(
            node, SealRequest(coinbase=address_of(first_key), test_bps=5000, **seal), first_key
        )
        assert [tx.hash for tx in node.reader.block(node.reader.header(first)).transactions] == [
            transfer.hash
        ]
        assert transfer.hash not in node.mempool
        better = seal_and_import(
            node,
            SealRequest(
                coinbase=address_of(better_key), test_bps=6000, parent_hash=parent.hash, **seal
            ),
            better_key,
        )
        assert node.reader.head().hash == better
        assert transfer.hash in node.mempool  # dropped with the first block, pooled again
    finally:
        node.close()


def test_a_block_from_the_future_is_refused_until_its_time():
    import time

    import rlp

    from pole_chain.chain.block_production import produce_idle_block
    from tests.chain.conftest import new_chain

    producer = new_chain()
    future = produce_idle_block(producer, [], timestamp=int(time.time()) + 3600).block
    node = Node(None, dev=False)
    try:
        with pytest.raises(BlockRejected, match="s in the future .limit 15 s.; try again later"):
            node.import_block(rlp.encode(future))
        assert node.reader.head().block_number == 0
    finally:
        node.close()
