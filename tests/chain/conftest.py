"""A small harness for the chain core: real PoLe chains on real databases, signed transactions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import pytest
from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak

from pole_chain.chain.block_production import produce_idle_block
from pole_chain.chain.opening import open_chain
from vm_hooks.params import CHAIN_ID, REGISTRY_ADDRESS
from pole_chain.chain.database import open_database
from vm_hooks.genesis import dev_accounts
from vm_hooks.chain import PoLeChain
from vm_hooks.consensus import state_at
from vm_hooks.idle_pow import IdleParams
from vm_hooks.registry_calls import Task, encode_call
from vm_hooks.seal import SealedHeader

#: Tiny idle work so tests spend no time hashing.
FAST_IDLE = IdleParams(target_interval=5, initial_work=2, min_work=1, reveal_window=10)


class AcceptingVerifier:
    """Stands in for model evaluation, which these consensus-layer tests do not exercise:
    every structural rule is still checked by PoLeConsensus before it is called."""

    def __init__(self) -> None:
        self.calls = 0
        self.anchors: list[bytes] = []

    def verify(
        self, header: BlockHeaderAPI, sealed: SealedHeader, task: Task, anchor_hash: bytes
    ) -> None:
        self.calls += 1
        self.anchors.append(anchor_hash)


def miner_key(label: bytes) -> keys.PrivateKey:
    """A test miner's key: a PoLe block is signed by its coinbase (vm_hooks/seal.py)."""
    return keys.PrivateKey(keccak(b"test miner " + label))


def address_of(key: keys.PrivateKey) -> bytes:
    return key.public_key.to_canonical_address()


def new_chain(*, dev: bool = False, verifier: Any = None, datadir=None) -> PoLeChain:
    return open_chain(
        open_database(datadir), dev=dev, verifier=verifier or AcceptingVerifier(), idle=FAST_IDLE
    )


def sign(chain: PoLeChain, tx: Dict[str, Any], account_index: int = 0) -> SignedTransactionAPI:
    fields = {
        "gas": 1_000_000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
        "chainId": CHAIN_ID,
        "type": 2,
        "value": 0,
        **tx,
    }
    signed = Account.sign_transaction(fields, dev_accounts()[account_index].key)
    return chain.get_vm().get_transaction_builder().decode(bytes(signed.raw_transaction))


def nonce_of(chain: PoLeChain, account_index: int) -> int:
    address = bytes.fromhex(dev_accounts()[account_index].address[2:])
    return chain.get_vm().state.get_nonce(address)


def balance_of(chain: PoLeChain, address: bytes) -> int:
    return chain.get_vm().state.get_balance(address)


def post_task_tx(
    chain: PoLeChain,
    *,
    reward: int,
    time_limit: int,
    account_index: int = 0,
    nonce: Optional[int] = None,
    min_train_bps: int = 5_000,
) -> SignedTransactionAPI:
    data = encode_call(
        "post_task",
        [keccak(b"model"), keccak(b"dataset"), keccak(b"test set"), min_train_bps, time_limit, 1],
    )
    return sign(
        chain,
        {
            "to": REGISTRY_ADDRESS,
            "data": data,
            "value": reward,
            "nonce": nonce_of(chain, account_index) if nonce is None else nonce,
        },
        account_index,
    )


def head_state(chain: PoLeChain):
    return state_at(chain.chaindb.db, chain.get_canonical_head())


@dataclass
class TaskChain:
    """A producer chain with one or more open tasks, and the blocks that got it there."""

    chain: PoLeChain
    blocks: list


def replay(blocks: list, *, dev: bool = False, verifier: Any = None) -> PoLeChain:
    chain = new_chain(dev=dev, verifier=verifier)
    for block in blocks:
        chain.import_block(block)
    return chain


@pytest.fixture
def task_chain() -> TaskChain:
    """Two open tasks posted in an idle block: task 1 (value 100/60) beats task 2 (50/60)."""
    chain = new_chain()
    txs = [
        post_task_tx(chain, reward=100, time_limit=600, nonce=0),
        post_task_tx(chain, reward=50, time_limit=600, nonce=1),
    ]
    produced = produce_idle_block(chain, txs)
    assert len(produced.included) == 2, produced.rejected
    return TaskChain(chain=chain, blocks=[produced.block])


def block_hash(block: BlockAPI) -> bytes:
    return block.header.hash
