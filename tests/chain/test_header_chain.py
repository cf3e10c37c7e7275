"""The seal checks split as py-evm's clique splits them: header-only, then against parents.

``validate_seal`` needs nothing but the header, so ``Chain.validate_chain`` checks a range of
headers on a node that has none of their state (a header-first sync); the rules that need the
parent's state run in ``validate_seal_extension``, and an import runs both.
"""
import pytest
from eth_utils import keccak

from pole_chain.chain.block_production import (
    build_block,
    produce_idle_block,
    produce_pole_block,
    solve_idle_block,
)
from vm_hooks.seal import Seal, header_fields
from vm_hooks.seal_errors import IdleWorkError, ScoreClaimError

from .conftest import address_of, miner_key, new_chain, post_task_tx, replay

MINER_KEY = miner_key(b"header chain")
MINER = address_of(MINER_KEY)


@pytest.fixture
def produced():
    """A producer chain and its blocks: idle (posts task 1), PoLe (settles it), idle."""
    chain = new_chain()
    blocks = [produce_idle_block(chain, [post_task_tx(chain, reward=10**18, time_limit=600)]).block]
    blocks.append(
        produce_pole_block(
            chain, [], signer=MINER_KEY, task_id=1, model_commitment=keccak(b"m"),
            train_bps=8_000, test_bps=7_000, release_digest=keccak(b"r"),
        ).block
    )
    blocks.append(produce_idle_block(chain, []).block)
    return chain, blocks


def valid_seals(chain, header):
    return chain.get_vm_class(header).consensus_class._valid_seals


def test_a_header_range_validates_on_a_node_without_its_state(produced):
    _chain, blocks = produced
    fresh = new_chain()
    genesis = fresh.get_canonical_head()
    assert not fresh.chaindb.db.exists(blocks[0].header.state_root)
    fresh.validate_chain(genesis, tuple(block.header for block in blocks))


def test_a_header_range_with_a_false_score_is_refused(produced):
    _chain, blocks = produced
    headers = [block.header for block in blocks[:2]]
    inflated = headers[1].copy(difficulty=headers[1].difficulty + 1)
    fresh = new_chain()
    with pytest.raises(ScoreClaimError):
        fresh.validate_chain(fresh.get_canonical_head(), (headers[0], inflated))


def test_parent_dependent_rules_wait_for_the_extension(produced):
    """An idle seal with real proof of work for the wrong work passes the header check."""
    chain, blocks = produced
    parent = blocks[1].header  # a PoLe block: the next idle block must carry initial_work 2
    timestamp = blocks[2].header.timestamp
    wrong = build_block(chain, [], header_fields(Seal.idle(3), miner=MINER), timestamp, parent)
    wrong_header = solve_idle_block(wrong, 3).block.header
    importer = replay(blocks[:2])
    importer.validate_chain(parent, (wrong_header,))  # header-only: fine
    with pytest.raises(IdleWorkError):
        importer.validate_chain_extension((wrong_header,))
    with pytest.raises(IdleWorkError):
        importer.import_block(solve_idle_block(wrong, 3).block)
    assert wrong_header.hash not in valid_seals(importer, wrong_header)
    importer.validate_chain_extension((blocks[2].header,))


def test_import_remembers_only_valid_seals(produced):
    _chain, blocks = produced
    importer = replay(blocks)
    assert all(block.hash in valid_seals(importer, block.header) for block in blocks)
