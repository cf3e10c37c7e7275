"""The node's doors for outside bytes: a raw transaction (eth_sendRawTransaction) is admitted
or refused with TransactionRejected, a raw block (pole_submitBlock, peers) is imported or
refused with BlockRejected; nothing else escapes, whatever the bytes. Real in-memory nodes."""
from __future__ import annotations

import pytest
import rlp
from eth_account import Account
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pole_chain.node.node import BlockRejected, Node, TransactionRejected
from tests.properties.mutations import mutated, refusal_kind, rlp_mutated, rlp_scrambled
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID

RECIPIENT = "0x" + "42" * 20


def _signed_transactions() -> list[bytes]:
    """Valid raw transactions of every type the chain takes (legacy, 2930, 1559)."""
    account = dev_accounts()[1]
    base = {"chainId": CHAIN_ID, "to": RECIPIENT, "value": 1, "gas": 60_000, "data": b""}
    fields = [
        {**base, "nonce": 0, "gasPrice": 10**10},
        {**base, "nonce": 1, "gasPrice": 10**10, "accessList": [{"address": RECIPIENT, "storageKeys": ["0x" + "00" * 32]}]},
        {**base, "nonce": 2, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "data": b"\x01\x02"},
    ]
    return [bytes(Account.sign_transaction(tx, account.key).raw_transaction) for tx in fields]


TRANSACTIONS = _signed_transactions()


@pytest.fixture(scope="module")
def node():
    """A full (non-dev) node: admits into its pool, never mines by itself."""
    with Node(None, dev=False) as node:
        yield node


@pytest.fixture(scope="module")
def blocks():
    """RLP of the first blocks of a dev chain, with transactions of every type in them."""
    with Node(None, dev=True) as producer:
        for raw in TRANSACTIONS:
            producer.submit_raw_transaction(raw)
        with producer.lock:
            headers = [producer.reader.canonical_header(n) for n in (1, 2, 3)]
            return [rlp.encode(producer.reader.block(header)) for header in headers]


@pytest.fixture(scope="module")
def follower():
    with Node(None, dev=True) as node:
        yield node


def submit_or_refuse(node: Node, raw: bytes) -> None:
    try:
        node.submit_raw_transaction(raw)
    except TransactionRejected as error:
        event(f"refused: {refusal_kind(error)}")
    else:
        event("admitted")


def import_or_refuse(node: Node, raw: bytes) -> None:
    try:
        node.import_block(raw)
    except BlockRejected as error:
        event(f"refused: {refusal_kind(error)}")
    else:
        event("imported")


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_a_transaction_raise_only_transaction_rejected(node, raw):
    submit_or_refuse(node, raw)


@settings(max_examples=200)
@given(
    st.one_of(
        mutated(st.sampled_from(TRANSACTIONS)),
        rlp_mutated(st.sampled_from(TRANSACTIONS[:1])),  # legacy: the RLP list is the whole tx
        rlp_scrambled(st.sampled_from(TRANSACTIONS[1:]), prefix_size=1),  # typed: type byte first
    )
)
def test_mutated_transactions_raise_only_transaction_rejected(node, raw):
    submit_or_refuse(node, raw)


@settings(max_examples=100)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_a_block_raise_only_block_rejected(follower, raw):
    import_or_refuse(follower, raw)


@settings(max_examples=120)
@given(st.data())
def test_mutated_blocks_raise_only_block_rejected(follower, blocks, data):
    valid = st.sampled_from(blocks[:1])  # block 1 has the genesis as parent: full validation
    raw = data.draw(st.one_of(mutated(valid), rlp_mutated(valid), rlp_scrambled(valid)))
    import_or_refuse(follower, raw)
