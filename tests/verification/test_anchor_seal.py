"""The model checks against the task anchor: the SML seed, the commitment and the release
are bound to the block after which the task became best, so a PoLe block may land on any
descendant of it, idle blocks may come in between, and a model is re-sealed on another
branch without retraining (docs/PROTOCOL.md, "Task anchor")."""
from __future__ import annotations

import pytest
from eth.exceptions import ParentNotFound
from eth_utils import ValidationError

from miner.messages import commitment_for
from pole_chain.chain.block_production import produce_idle_block
from pole_chain.chain.database import open_database
from pole_chain.chain.opening import open_chain
from pole_chain.node.solution_book import SolutionBook, SolutionRejected
from miner.seal_verifier import ModelSealVerifier
from vm_hooks.seal_errors import ModelRejectedError, ReleaseError

from tests.chain.conftest import FAST_IDLE, head_state

from .conftest import MINER, address


def idle_blocks(chain, count: int, start_offset: int = 1) -> list:
    """``count`` idle blocks on the head, ``start_offset`` s after it, then 1 s apart."""
    blocks = []
    for index in range(count):
        head = chain.get_canonical_head()
        offset = start_offset if index == 0 else 1
        blocks.append(produce_idle_block(chain, [], timestamp=head.timestamp + offset).block)
    return blocks


def test_a_pole_block_on_a_descendant_of_the_anchor_is_accepted_and_paid(height):
    idle_blocks(height.chain, 3)  # transactions keep confirming while the miner trains
    assert height.parent.hash != height.anchor.hash
    before = head_state(height.chain).get_balance(address(MINER))
    block = height.seal().block
    assert height.chain.get_canonical_head() == block.header
    assert block.header.block_number == height.anchor.number + 4
    assert head_state(height.chain).get_balance(address(MINER)) == before + 10**18


def test_a_release_naming_another_block_than_the_anchor_is_refused(height):
    idle_blocks(height.chain, 1)
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.anchor.hash)
    wrong = height.release([commitment], anchor_hash=height.parent.hash)  # the parent, not A
    with pytest.raises(SolutionRejected, match="expected task 1 at anchor"):
        height.book.add_release(wrong, height.task)
    height.store_release(wrong)
    head = height.chain.get_canonical_head()
    with pytest.raises(ReleaseError):
        height.seal(release=wrong, commitment=commitment)
    assert height.chain.get_canonical_head() == head


def test_a_commitment_bound_to_the_parent_instead_of_the_anchor_is_refused(height):
    idle_blocks(height.chain, 1)
    parent = height.parent
    assert parent.hash != height.anchor.hash
    bound_to_parent = height.book.reveal_model(height.model_blob, address(MINER), parent.hash)
    assert bound_to_parent == commitment_for(height.model_blob, address(MINER), parent.hash)
    release = height.release([bound_to_parent])
    height.book.add_release(release, height.task)
    with pytest.raises(ModelRejectedError, match="anchor"):
        height.seal(release=release, commitment=bound_to_parent)
    assert height.chain.get_canonical_head() == parent


def test_a_block_orphaned_by_an_idle_reorg_is_sealed_again_on_the_new_head(height):
    """Node B never saw the parent of the miner's first block: a heavier idle branch
    replaced it. The same model, commitment and release seal a block on B's head."""
    peer_db = open_database(None)
    peer_book = SolutionBook(peer_db, height.book.blobs)  # B holds the same blobs
    peer = open_chain(peer_db, dev=False, verifier=ModelSealVerifier(peer_book), idle=FAST_IDLE)
    for number in range(1, height.anchor.number + 1):
        peer.import_block(height.chain.get_canonical_block_by_number(number))
    idle_blocks(height.chain, 1, start_offset=1)  # the miner's node: A - I1
    idle_blocks(peer, 2, start_offset=2)  # node B: A - I1' - I2', heavier and without I1
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.anchor.hash)
    release = height.release([commitment])
    task = height.task  # open and best on both nodes, anchored at A
    height.book.add_release(release, task)
    first = height.seal(release=release, commitment=commitment).block
    with pytest.raises((ParentNotFound, ValidationError)):
        peer.import_block(first)  # orphaned: its parent I1 is not on B's chain

    assert peer_book.reveal_model(height.model_blob, address(MINER), height.anchor.hash) == commitment
    peer_book.add_release(release, task)
    again = height.seal(release=release, commitment=commitment, chain=peer).block
    assert peer.get_canonical_head() == again.header
    assert again.header.parent_hash != first.header.parent_hash
    assert again.header.mix_hash == first.header.mix_hash == commitment
    assert peer_book.model_for(commitment) == height.model_blob  # the same model: no retraining
