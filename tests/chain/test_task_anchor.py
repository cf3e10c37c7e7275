"""The task anchor (docs/PROTOCOL.md, "Task anchor"): idle blocks carry transactions while a
task is open, a PoLe block lands on any descendant of its task's anchor before the deadline,
and its score makes the best test accuracy win whatever idle blocks lie in between."""
import pytest
from eth_utils import keccak

from pole_chain.chain.block_production import (
    build_block,
    build_idle_block,
    persist,
    produce_idle_block,
    produce_pole_block,
    sign_pole_block,
    solve_idle_block,
)
from vm_hooks.anchor import BestTasks, anchored_best_task
from vm_hooks.consensus import state_at
from vm_hooks.seal import Seal, header_fields
from vm_hooks.seal_errors import TaskDeadlineError, TaskSelectionError

from .conftest import (
    AcceptingVerifier,
    address_of,
    head_state,
    miner_key,
    post_task_tx,
    replay,
    sign,
)

MINER_KEY = miner_key(b"anchor")
MINER = address_of(MINER_KEY)
COMMITMENT = keccak(b"commitment")
RELEASE = keccak(b"release")


def transfer(chain, nonce: int):
    return sign(chain, {"to": b"\x42" * 20, "value": 1, "gas": 21_000, "nonce": nonce}, 3)


def idle_on(chain, parent, timestamp, transactions=()):
    produced, work = build_idle_block(
        chain, list(transactions), timestamp=timestamp, parent=parent
    )
    return persist(chain, solve_idle_block(produced, work)).block


def pole_on(chain, parent, *, test_bps=9_000, task_id=1, timestamp=None, key=MINER_KEY):
    return produce_pole_block(
        chain, [], signer=key, task_id=task_id, model_commitment=COMMITMENT,
        train_bps=9_500, test_bps=test_bps, release_digest=RELEASE, parent=parent,
        timestamp=timestamp,
    ).block


def test_idle_blocks_carry_transactions_while_a_task_is_open(task_chain):
    chain = task_chain.chain
    produced = produce_idle_block(chain, [transfer(chain, 0)])
    assert len(produced.included) == 1
    replay(task_chain.blocks + [produced.block])  # every node accepts it
    assert anchored_best_task(head_state(chain)).task.task_id == 1  # the task stays open


def test_a_pole_block_lands_on_any_descendant_of_its_anchor(task_chain):
    chain = task_chain.chain
    anchor = task_chain.blocks[0].header  # task 1 became best after the block posting it
    idle = [produce_idle_block(chain, [], timestamp=anchor.timestamp + n).block for n in (1, 2, 3)]
    assert anchored_best_task(head_state(chain)).anchor_number == anchor.block_number
    verifier = AcceptingVerifier()
    importer = replay(task_chain.blocks + idle, verifier=verifier)
    block = pole_on(chain, chain.get_canonical_head())
    importer.import_block(block)
    assert importer.get_canonical_head() == block.header
    assert verifier.anchors == [anchor.hash]  # the verifier checks against the anchor


def test_a_pole_block_after_its_tasks_deadline_is_refused(task_chain):
    chain = task_chain.chain
    deadline = anchored_best_task(head_state(chain)).task.deadline
    fields = header_fields(
        Seal.pole(9_500, 9_000, RELEASE), miner=MINER, task_id=1, commitment=COMMITMENT
    )
    late = sign_pole_block(build_block(chain, [], fields, deadline + 1).block, MINER_KEY)
    importer = replay(task_chain.blocks)
    with pytest.raises(TaskDeadlineError):
        importer.import_block(late)
    on_time = pole_on(chain, chain.get_canonical_head(), timestamp=deadline)
    importer.import_block(on_time)
    assert importer.get_canonical_head() == on_time.header


def test_a_new_best_task_moves_the_anchor(task_chain):
    chain = task_chain.chain
    better = post_task_tx(chain, reward=10**6, time_limit=600, nonce=2)
    posted = produce_idle_block(chain, [better]).block  # task 3 becomes best after it
    produce_idle_block(chain, [], timestamp=posted.header.timestamp + 1)
    anchored = anchored_best_task(head_state(chain))
    assert (anchored.task.task_id, anchored.anchor_number) == (3, posted.header.block_number)
    verifier = AcceptingVerifier()
    importer = replay(
        task_chain.blocks + [posted, chain.get_canonical_block_by_number(3)], verifier=verifier
    )
    with pytest.raises(TaskSelectionError):
        importer.import_block(pole_on(chain, chain.get_canonical_head(), task_id=1))
    importer.import_block(pole_on(chain, chain.get_canonical_head(), task_id=3))
    assert verifier.anchors == [posted.header.hash]


def test_the_better_test_accuracy_wins_over_a_branch_with_more_idle_blocks(task_chain):
    """Siblings of one task on different descendants of the anchor: idle blocks count 1
    each, a basis point of test accuracy 2**20, so 9001 bps beats 9000 bps + idle blocks."""
    chain = task_chain.chain
    anchor = task_chain.blocks[0].header
    long_branch = []
    parent = anchor
    for offset in range(1, 6):
        block = idle_on(chain, parent, anchor.timestamp + offset)
        long_branch.append(block)
        parent = block.header
    worse = pole_on(chain, parent, test_bps=9_000)
    better = pole_on(chain, anchor, test_bps=9_001, key=miner_key(b"better"))
    assert chain.get_canonical_head() == better.header
    for order in ([worse, better], [better, worse]):
        importer = replay(task_chain.blocks + long_branch)
        for block in order:
            importer.import_block(block)
        assert importer.get_canonical_head() == better.header
    idle_only = replay(task_chain.blocks + long_branch)
    idle_only.import_block(pole_on(chain, anchor, test_bps=1, key=miner_key(b"low")))
    assert idle_only.get_canonical_head().block_number == anchor.block_number + 1  # PoLe wins


def test_the_best_task_of_a_state_is_remembered_by_state_root_and_anchors_only_its_block(task_chain):
    chain = task_chain.chain
    anchor = task_chain.blocks[0].header
    later = produce_idle_block(chain, [transfer(chain, 0)], timestamp=anchor.timestamp + 1).block
    asked: list[bytes] = []

    def state_of(header):
        asked.append(header.hash)
        return state_at(chain.chaindb.db, header)

    best = BestTasks()
    for header in (anchor, anchor, later.header, later.header):
        assert best.at(header, state_of) == anchored_best_task(state_at(chain.chaindb.db, header))
    assert asked == [anchor.hash, later.hash]  # each state asked once
    assert best.anchored_at(anchor, state_of).task_id == 1  # task 1 became best after it
    assert best.anchored_at(later.header, state_of) is None  # still task 1's, anchored earlier
    genesis = chain.get_canonical_block_header_by_number(0)
    assert best.at(genesis, state_of) is None and best.anchored_at(genesis, state_of) is None
