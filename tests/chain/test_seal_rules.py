"""Each cheat on a seal is refused on import by a node that has the honest prefix."""
import pytest
from eth_utils import ValidationError, keccak

from pole_chain.chain.block_production import (
    SealFields,
    build_block,
    next_timestamp,
    produce_dev_block,
    produce_idle_block,
    produce_pole_block,
)
from vm_hooks.consensus import DEV_SCORE, IDLE_SCORE
from vm_hooks.idle_pow import pow_hash, meets_work
from vm_hooks.seal import Seal

from .conftest import AcceptingVerifier, new_chain, replay

MINER = b"\x11" * 20
COMMITMENT = keccak(b"commitment")
RELEASE = keccak(b"release")


def pole_fields(*, task_id=1, test_bps=9_000, difficulty=None, train_bps=9_500):
    return SealFields(
        seal=Seal.pole(train_bps, test_bps, RELEASE),
        coinbase=MINER,
        difficulty=test_bps if difficulty is None else difficulty,
        nonce=task_id.to_bytes(8, "big"),
        mix_hash=COMMITMENT,
    )


def refused(task_chain, block, message):
    importer = replay(task_chain.blocks)
    head = importer.get_canonical_head()
    with pytest.raises(ValidationError, match=message):
        importer.import_block(block)
    assert importer.get_canonical_head() == head


def test_honest_pole_block_is_accepted_and_verified(task_chain):
    verifier = AcceptingVerifier()
    importer = replay(task_chain.blocks, verifier=verifier)
    produced = produce_pole_block(
        task_chain.chain, [], coinbase=MINER, task_id=1, model_commitment=COMMITMENT,
        train_bps=9_500, test_bps=9_000, release_digest=RELEASE,
    )
    importer.import_block(produced.block)
    assert importer.get_canonical_head() == produced.block.header
    assert verifier.calls == 1


def test_wrong_score_is_refused(task_chain):
    chain = task_chain.chain
    block = build_block(chain, [], pole_fields(difficulty=9_999), next_timestamp(chain, None)).block
    refused(task_chain, block, "score .difficulty. 9999 must equal the claimed test accuracy 9000")


def test_zero_test_accuracy_is_refused(task_chain):
    chain = task_chain.chain
    block = build_block(chain, [], pole_fields(test_bps=0, difficulty=0), next_timestamp(chain, None)).block
    refused(task_chain, block, "test accuracy above 0")


def test_malformed_extra_data_is_refused(task_chain):
    chain = task_chain.chain
    block = build_block(chain, [], pole_fields(), next_timestamp(chain, None)).block
    bad = block.copy(header=block.header.copy(extra_data=b"PL\x01\x07" + bytes(28)))
    refused(task_chain, bad, "unknown block kind 7")


def test_block_for_a_task_that_is_not_the_best_is_refused(task_chain):
    chain = task_chain.chain
    block = build_block(chain, [], pole_fields(task_id=2), next_timestamp(chain, None)).block
    refused(task_chain, block, "PoLe block for task 2, but the best open task is 1")


def test_idle_seal_while_a_task_is_open_is_refused(task_chain):
    chain = task_chain.chain
    with pytest.raises(ValidationError, match="idle block while task 1 is open"):
        produce_idle_block(chain, [])
    parent = chain.get_canonical_head()
    fields = SealFields(seal=Seal.idle(2), coinbase=MINER, difficulty=IDLE_SCORE)
    block = build_block(chain, [], fields, parent.timestamp + 1).block
    refused(task_chain, block, "idle block while task 1 is open")


def test_idle_block_is_allowed_once_the_best_task_is_overdue(task_chain):
    chain = task_chain.chain
    deadline_passed = chain.get_canonical_head().timestamp + 601
    produced = produce_idle_block(chain, [], timestamp=deadline_passed)
    replay(task_chain.blocks + [produced.block])


def test_bad_proof_of_work_is_refused():
    chain = new_chain()
    produced = produce_idle_block(chain, [])
    header = produced.block.header
    work = Seal.decode(header.extra_data).idle_work
    bad_nonce = next(
        n.to_bytes(8, "big")
        for n in range(1_000)
        if not meets_work(pow_hash(header), n.to_bytes(8, "big"), work)
    )
    bad = produced.block.copy(header=header.copy(nonce=bad_nonce))
    with pytest.raises(ValidationError, match="proof of work does not meet"):
        new_chain().import_block(bad)


def test_idle_work_must_follow_the_retarget_rule():
    chain = new_chain()
    fields = SealFields(seal=Seal.idle(3), coinbase=MINER, difficulty=IDLE_SCORE)
    block = build_block(chain, [], fields, next_timestamp(chain, None)).block
    with pytest.raises(ValidationError, match="idle work 3, expected 2"):
        new_chain().import_block(block)


def test_dev_seal_on_a_non_dev_chain_is_refused():
    chain = new_chain()
    fields = SealFields(seal=Seal.dev(), coinbase=MINER, difficulty=DEV_SCORE)
    block = build_block(chain, [], fields, next_timestamp(chain, None)).block
    with pytest.raises(ValidationError, match="dev block on a chain not configured for dev"):
        new_chain().import_block(block)


def test_dev_blocks_replay_on_a_dev_chain():
    chain = new_chain(dev=True)
    produced = produce_dev_block(chain, [])
    assert replay([produced.block], dev=True).get_canonical_head() == produced.block.header


def test_pole_block_refused_by_a_node_without_a_model_verifier(task_chain):
    from pole_chain.chain.opening import open_chain
    from pole_chain.chain.database import open_database

    from .conftest import FAST_IDLE

    produced = produce_pole_block(
        task_chain.chain, [], coinbase=MINER, task_id=1, model_commitment=COMMITMENT,
        train_bps=9_500, test_bps=9_000, release_digest=RELEASE,
    )
    strict = open_chain(open_database(None), dev=False, idle=FAST_IDLE)
    for block in task_chain.blocks:
        strict.import_block(block)
    with pytest.raises(ValidationError, match="no PoLe seal verifier"):
        strict.import_block(produced.block)


def test_idle_block_inside_a_pole_blocks_reveal_window_is_refused(task_chain):
    pole = produce_pole_block(
        task_chain.chain, [], coinbase=MINER, task_id=1, model_commitment=COMMITMENT,
        train_bps=9_500, test_bps=9_000, release_digest=RELEASE,
    ).block
    chain = task_chain.chain
    deadline = pole.header.timestamp + 600 + 1  # task 2 overdue: only the window matters
    fields = SealFields(seal=Seal.idle(2), coinbase=MINER, difficulty=IDLE_SCORE)
    early = build_block(chain, [], fields, pole.header.timestamp + 9).block
    with pytest.raises(ValidationError, match="inside the reveal window of PoLe block #2"):
        replay(task_chain.blocks + [pole]).import_block(early)
    on_time = produce_idle_block(chain, [], timestamp=max(deadline, pole.header.timestamp + 10))
    assert on_time.block.header.timestamp >= pole.header.timestamp + 10
    replay(task_chain.blocks + [pole, on_time.block])
