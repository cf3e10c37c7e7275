"""Produce blocks on the head of a chain: dev, idle (proof of work) and PoLe seals.

The block is built with its seal fields already in the header (so the execution context,
coinbase and PREVRANDAO included, is the one importers will see), transactions that fail
validation are left out, and the result goes through the chain's full validation (seal
included) before it is persisted: a node never stores a block its peers would refuse.

A PoLe block must be signed by its coinbase (vm_hooks/seal.py), whose key a node does not
hold: ``build_pole_block`` builds it unsigned, the miner signs it (``sign_pole_block``) and
the node imports the signed block. ``produce_pole_block`` does all three for a caller that
holds the key (tests, benchmarks).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from eth.constants import ZERO_ADDRESS
from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI
from eth_keys import keys
from eth_typing import Address
from eth_utils import ValidationError

from vm_hooks.chain import PoLeChain
from vm_hooks.consensus import idle_allowed_from, parent_idle_work
from vm_hooks.idle_pow import IdleParams, expected_work, pow_hash, solve
from vm_hooks.seal import Seal, header_fields, sign_header

#: Header fields that carry a seal, as ``vm_hooks.seal.header_fields`` builds them.
SealFields = Dict[str, Any]


@dataclass
class ProducedBlock:
    block: BlockAPI
    included: List[SignedTransactionAPI] = field(default_factory=list)
    rejected: List[Tuple[SignedTransactionAPI, str]] = field(default_factory=list)
    #: Set by ``persist``: the blocks that became canonical and those a reorg dropped.
    new_canonical: Tuple[BlockAPI, ...] = ()
    old_canonical: Tuple[BlockAPI, ...] = ()


class BlockProductionStopped(Exception):
    """Idle proof-of-work search was stopped before a nonce was found."""


def next_timestamp(
    chain: PoLeChain, timestamp: Optional[int], parent: Optional[BlockHeaderAPI] = None
) -> int:
    parent = parent or chain.get_canonical_head()
    return max(timestamp if timestamp is not None else int(time.time()), parent.timestamp + 1)


def build_block(
    chain: PoLeChain,
    transactions: Sequence[SignedTransactionAPI],
    fields: SealFields,
    timestamp: int,
    parent: Optional[BlockHeaderAPI] = None,
) -> ProducedBlock:
    """Execute ``transactions`` on ``parent`` (default: the head) under ``fields``.

    The block is not persisted.
    """
    parent = parent or chain.get_canonical_head()
    header = chain.create_header_from_parent(parent, timestamp=timestamp, **fields)
    vm = chain.get_vm(header)
    produced = ProducedBlock(block=vm.get_block())
    receipts = []
    for transaction in transactions:
        if header.gas_used + transaction.gas > header.gas_limit:
            produced.rejected.append((transaction, "block gas limit reached"))
            continue
        try:
            header, (receipt,), _ = vm.apply_all_transactions([transaction], header)
        except ValidationError as error:
            produced.rejected.append((transaction, str(error)))
            continue
        produced.included.append(transaction)
        receipts.append(receipt)
    filled = vm.set_block_transactions_and_withdrawals(
        vm.get_block(), header, produced.included, receipts
    )
    produced.block = vm.mine_block(filled).block
    return produced


def persist(chain: PoLeChain, produced: ProducedBlock) -> ProducedBlock:
    result = chain.persist_block(produced.block, perform_validation=True)
    produced.new_canonical = result.new_canonical_blocks
    produced.old_canonical = result.old_canonical_blocks
    return produced


def produce_dev_block(
    chain: PoLeChain,
    transactions: Sequence[SignedTransactionAPI],
    *,
    timestamp: Optional[int] = None,
    coinbase: Address = ZERO_ADDRESS,
) -> ProducedBlock:
    fields = header_fields(Seal.dev(), miner=coinbase)
    return persist(chain, build_block(chain, transactions, fields, next_timestamp(chain, timestamp)))


def build_idle_block(
    chain: PoLeChain,
    transactions: Sequence[SignedTransactionAPI],
    *,
    timestamp: int,
    coinbase: Address = ZERO_ADDRESS,
    parent: Optional[BlockHeaderAPI] = None,
) -> Tuple[ProducedBlock, int]:
    """An idle block still missing its proof-of-work nonce, and the work it must meet."""
    parent = parent or chain.get_canonical_head()
    idle = idle_params(chain, parent)
    work = expected_work(parent_idle_work(parent), parent.timestamp, timestamp, idle)
    fields = header_fields(Seal.idle(work), miner=coinbase)
    return build_block(chain, transactions, fields, timestamp, parent), work


def idle_params(chain: PoLeChain, parent: BlockHeaderAPI) -> IdleParams:
    return chain.get_vm_class(parent).consensus_class.idle


def earliest_idle_timestamp(chain: PoLeChain, timestamp: Optional[int]) -> int:
    """``timestamp`` (default: now), moved past the head and its PoLe reveal window."""
    parent = chain.get_canonical_head()
    return max(next_timestamp(chain, timestamp, parent), idle_allowed_from(parent, idle_params(chain, parent)))


def solve_idle_block(
    produced: ProducedBlock, work: int, stop: Optional[threading.Event] = None
) -> ProducedBlock:
    """Search the nonce (no chain access: callers may run it without holding locks)."""
    nonce = solve(pow_hash(produced.block.header), work, stop)
    if nonce is None:
        raise BlockProductionStopped("idle proof-of-work search stopped")
    produced.block = produced.block.copy(header=produced.block.header.copy(nonce=nonce))
    return produced


def produce_idle_block(
    chain: PoLeChain,
    transactions: Sequence[SignedTransactionAPI],
    *,
    timestamp: Optional[int] = None,
    coinbase: Address = ZERO_ADDRESS,
    stop: Optional[threading.Event] = None,
) -> ProducedBlock:
    produced, work = build_idle_block(
        chain, transactions, timestamp=earliest_idle_timestamp(chain, timestamp), coinbase=coinbase
    )
    return persist(chain, solve_idle_block(produced, work, stop))


def build_pole_block(
    chain: PoLeChain,
    transactions: Sequence[SignedTransactionAPI],
    *,
    coinbase: Address,
    task_id: int,
    model_commitment: bytes,
    train_bps: int,
    test_bps: int,
    release_digest: bytes,
    timestamp: Optional[int] = None,
    parent: Optional[BlockHeaderAPI] = None,
) -> ProducedBlock:
    """An unsigned PoLe block on ``parent``: competing miners seal siblings on one parent."""
    parent = parent or chain.get_canonical_head()
    fields = header_fields(
        Seal.pole(train_bps, test_bps, release_digest),
        miner=coinbase,
        task_id=task_id,
        commitment=model_commitment,
    )
    ts = next_timestamp(chain, timestamp, parent)
    return build_block(chain, transactions, fields, ts, parent)


def sign_pole_block(block: BlockAPI, private_key: keys.PrivateKey) -> BlockAPI:
    """``block`` with its header signed by the coinbase key (no chain access)."""
    return block.copy(header=sign_header(block.header, private_key))


def produce_pole_block(
    chain: PoLeChain,
    transactions: Sequence[SignedTransactionAPI],
    *,
    signer: keys.PrivateKey,
    task_id: int,
    model_commitment: bytes,
    train_bps: int,
    test_bps: int,
    release_digest: bytes,
    timestamp: Optional[int] = None,
    parent: Optional[BlockHeaderAPI] = None,
) -> ProducedBlock:
    """Build, sign and persist a PoLe block whose coinbase is ``signer``'s address."""
    produced = build_pole_block(
        chain,
        transactions,
        coinbase=Address(signer.public_key.to_canonical_address()),
        task_id=task_id,
        model_commitment=model_commitment,
        train_bps=train_bps,
        test_bps=test_bps,
        release_digest=release_digest,
        timestamp=timestamp,
        parent=parent,
    )
    produced.block = sign_pole_block(produced.block, signer)
    return persist(chain, produced)
