"""Each cheat on a seal is refused on import by a node that has the honest prefix."""
import pytest
from eth_utils import keccak

from pole_chain.chain.block_production import (
    build_block,
    next_timestamp,
    produce_dev_block,
    produce_idle_block,
    produce_pole_block,
    sign_pole_block,
    solve_idle_block,
)
from vm_hooks.idle_pow import pow_hash, meets_work
from vm_hooks.seal import Seal, header_fields, read_seal
from vm_hooks.seal_errors import (
    DevSealError,
    IdleTimingError,
    IdleWorkError,
    NoVerifierError,
    ScoreClaimError,
    SealFormatError,
    TaskSelectionError,
)

from .conftest import AcceptingVerifier, address_of, miner_key, new_chain, replay

MINER_KEY = miner_key(b"seal rules")
MINER = address_of(MINER_KEY)
COMMITMENT = keccak(b"commitment")
RELEASE = keccak(b"release")


def pole_fields(*, task_id=1, test_bps=9_000, difficulty=None, train_bps=9_500):
    fields = header_fields(
        Seal.pole(train_bps, test_bps, RELEASE), miner=MINER, task_id=task_id, commitment=COMMITMENT
    )
    return fields if difficulty is None else {**fields, "difficulty": difficulty}


def idle_fields(work):
    return header_fields(Seal.idle(work), miner=MINER)


def solved_idle_block(chain, work, timestamp):
    """An idle block with a valid proof of work, so the rule under test is the one hit."""
    produced = build_block(chain, [], idle_fields(work), timestamp)
    return solve_idle_block(produced, work).block


def refused(task_chain, block, error):
    importer = replay(task_chain.blocks)
    head = importer.get_canonical_head()
    with pytest.raises(error):
        importer.import_block(block)
    assert importer.get_canonical_head() == head


def test_honest_pole_block_is_accepted_and_verified(task_chain):
    verifier = AcceptingVerifier()
    importer = replay(task_chain.blocks, verifier=verifier)
    produced = produce_pole_block(
        task_chain.chain, [], signer=MINER_KEY, task_id=1, model_commitment=COMMITMENT,
        train_bps=9_500, test_bps=9_000, release_digest=RELEASE,
    )
    importer.import_block(produced.block)
    assert importer.get_canonical_head() == produced.block.header
    assert verifier.calls == 1


def test_wrong_score_is_refused(task_chain):
    chain = task_chain.chain
    block = build_block(chain, [], pole_fields(difficulty=9_999), next_timestamp(chain, None)).block
    refused(task_chain, block, ScoreClaimError)


def test_zero_test_accuracy_is_refused(task_chain):
    chain = task_chain.chain
    block = build_block(chain, [], pole_fields(test_bps=0, difficulty=0), next_timestamp(chain, None)).block
    refused(task_chain, block, ScoreClaimError)


def test_malformed_extra_data_is_refused(task_chain):
    chain = task_chain.chain
    block = build_block(chain, [], pole_fields(), next_timestamp(chain, None)).block
    bad = block.copy(header=block.header.copy(extra_data=b"PL\x01\x07" + bytes(28)))
    refused(task_chain, bad, SealFormatError)


def test_block_for_a_task_that_is_not_the_best_is_refused(task_chain):
    chain = task_chain.chain
    block = build_block(chain, [], pole_fields(task_id=2), next_timestamp(chain, None)).block
    signed = sign_pole_block(block, MINER_KEY)
    refused(task_chain, signed, TaskSelectionError)


def test_idle_block_is_allowed_once_the_best_task_is_overdue(task_chain):
    chain = task_chain.chain
    deadline_passed = chain.get_canonical_head().timestamp + 601
    produced = produce_idle_block(chain, [], timestamp=deadline_passed)
    replay(task_chain.blocks + [produced.block])


def test_bad_proof_of_work_is_refused():
    chain = new_chain()
    produced = produce_idle_block(chain, [])
    header = produced.block.header
    work = read_seal(header).idle_work
    bad_nonce = next(
        n.to_bytes(8, "big")
        for n in range(1_000)
        if not meets_work(pow_hash(header), n.to_bytes(8, "big"), work)
    )
    bad = produced.block.copy(header=header.copy(nonce=bad_nonce))
    with pytest.raises(IdleWorkError):
        new_chain().import_block(bad)


def test_idle_work_must_follow_the_retarget_rule():
    chain = new_chain()
    block = solved_idle_block(chain, 3, next_timestamp(chain, None))
    with pytest.raises(IdleWorkError):
        new_chain().import_block(block)


def test_dev_seal_on_a_non_dev_chain_is_refused():
    chain = new_chain()
    block = build_block(chain, [], header_fields(Seal.dev(), miner=MINER), next_timestamp(chain, None)).block
    with pytest.raises(DevSealError):
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
        task_chain.chain, [], signer=MINER_KEY, task_id=1, model_commitment=COMMITMENT,
        train_bps=9_500, test_bps=9_000, release_digest=RELEASE,
    )
    strict = open_chain(open_database(None), dev=False, idle=FAST_IDLE)
    for block in task_chain.blocks:
        strict.import_block(block)
    with pytest.raises(NoVerifierError):
        strict.import_block(produced.block)


def test_idle_block_inside_a_pole_blocks_reveal_window_is_refused(task_chain):
    pole = produce_pole_block(
        task_chain.chain, [], signer=MINER_KEY, task_id=1, model_commitment=COMMITMENT,
        train_bps=9_500, test_bps=9_000, release_digest=RELEASE,
    ).block
    chain = task_chain.chain
    deadline = pole.header.timestamp + 600 + 1  # task 2 overdue: only the window matters
    early = solved_idle_block(chain, 2, pole.header.timestamp + 9)
    with pytest.raises(IdleTimingError):
        replay(task_chain.blocks + [pole]).import_block(early)
    on_time = produce_idle_block(chain, [], timestamp=max(deadline, pole.header.timestamp + 10))
    assert on_time.block.header.timestamp >= pole.header.timestamp + 10
    replay(task_chain.blocks + [pole, on_time.block])
