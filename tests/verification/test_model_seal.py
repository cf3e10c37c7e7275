"""The model checks of a PoLe seal, with real training, real signatures and a real chain.

Each cheat of issue #3 is produced the way a cheating miner or data node would, then refused
when the block is validated (nodes validate what they produce exactly as what they import).
"""
from __future__ import annotations

import pytest
from eth_keys import keys
from eth_utils import keccak

from miner.integer_eval import evaluate_integer_model
from miner.integer_model import encode_model
from miner.messages import SolutionAnnouncement, commitment_for
from miner.model_spec import Conv2d, Dense, Flatten, ModelSpec, ReLU
from miner.sml import sml_for
from miner.training import train_model
from pole_chain.chain.block_production import produce_pole_block
from pole_chain.node.solution_book import SolutionRejected
from vm_hooks.params import CHAIN_ID
from vm_hooks.seal_errors import (
    AccuracyMismatchError,
    DataUnavailableError,
    MinimumAccuracyError,
    ModelRejectedError,
    ReleaseError,
)

from tests.chain.conftest import head_state

from tests.miner.test_integer_model import random_model

from .conftest import COPIER, MIN_TRAIN_BPS, MINER, address, make_height


def assert_refused(height, error, **seal_args):
    head = height.chain.get_canonical_head()
    with pytest.raises(error):
        height.seal(**seal_args)
    assert height.chain.get_canonical_head() == head
    assert height.task.is_open


def test_honest_block_is_accepted_and_pays_the_miner(height):
    assert height.train_bps >= MIN_TRAIN_BPS
    before = head_state(height.chain).get_balance(address(MINER))
    block = height.seal().block
    assert height.chain.get_canonical_head() == block.header
    assert head_state(height.chain).get_balance(address(MINER)) == before + 10**18


def test_claimed_test_accuracy_above_the_true_one_is_refused(height):
    claim = height.test_bps + 25
    assert_refused(height, AccuracyMismatchError, test_bps=claim)


def test_claimed_training_accuracy_above_the_true_one_is_refused(height):
    claim = height.train_bps + 1
    assert_refused(height, AccuracyMismatchError, train_bps=claim)


@pytest.mark.parametrize("input_shape", [(1, 8, 8), (9, 8, 8), (100,)])
def test_a_task_whose_model_no_sml_produces_is_refused(trained, input_shape):
    """A poster's spec that fits neither SML of its data (an image input with E = 1 or 9
    maps per pixel, a flat input of the wrong width): the block is refused as a rejected
    model, the same verdict on every node, and nothing is evaluated."""
    _digits, train, test, _spec = trained
    layers = (Conv2d(4, 3, "same"), ReLU(), Flatten(), Dense(10)) if len(input_shape) == 3 else (Dense(10),)
    spec = ModelSpec(input_shape, 10, layers)
    height = make_height(train, test, spec, model=random_model(spec))
    with pytest.raises(ModelRejectedError, match="cannot be evaluated on the task's data"):
        height.seal()
    assert height.task.is_open


def test_weights_not_matching_the_commitment_are_refused(height):
    other = bytearray(height.model_blob)
    other[-5] ^= 0x01
    honest = commitment_for(height.model_blob, address(MINER), height.anchor.hash)
    # The node holds a different blob under the commitment the block claims.
    from pole_chain.node.solution_book import _MODEL_KEY
    height.book._db[_MODEL_KEY + honest] = height.book.blobs.put(bytes(other))
    assert_refused(height, ModelRejectedError, commitment=honest)


def test_a_copied_model_fails_under_the_copiers_sml(height):
    copier_sml = sml_for(height.anchor.hash, address(COPIER), height.train.d)
    from miner.integer_model import decode_model
    true_train = evaluate_integer_model(decode_model(height.model_blob), copier_sml, height.train)
    assert true_train < 5_000
    assert_refused(height, MinimumAccuracyError, miner=COPIER)


def test_a_model_trained_under_another_blocks_sml_is_refused(height, trained):
    _digits, train, _test, spec = trained
    stale_parent = height.chain.get_canonical_block_by_number(0).header  # not the anchor
    stale_sml = sml_for(stale_parent.hash, address(MINER), train.d)
    stale = train_model(spec, train, stale_sml, target_train_bps=9_800, time_limit_s=60, seed=1)
    assert stale.train_bps >= MIN_TRAIN_BPS  # good under the stale SML...
    assert_refused(  # ...but the block is checked under its task anchor's SML
        height, MinimumAccuracyError,
        model_blob=encode_model(stale.integer_model), train_bps=stale.train_bps,
    )


def test_an_announcement_after_the_release_is_not_admitted(height):
    honest = height.book.reveal_model(height.model_blob, address(MINER), height.anchor.hash)
    release = height.release([honest])
    height.book.add_release(release, height.task)
    late_blob = height.model_blob + b""
    late_commitment = commitment_for(late_blob, address(COPIER), height.anchor.hash)
    late = SolutionAnnouncement.sign(
        chain_id=CHAIN_ID, task_id=1, anchor_hash=height.anchor.hash,
        model_commitment=late_commitment, train_bps=9_900, private_key=COPIER.key,
    )
    with pytest.raises(SolutionRejected, match="announcements after the release are not admitted"):
        height.book.add_announcement(late, height.task)
    assert_refused(height, ReleaseError, miner=COPIER, release=release)


def test_a_release_not_signed_by_the_poster_is_refused(height):
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.anchor.hash)
    forged = height.release([commitment], key=COPIER.key)
    with pytest.raises(SolutionRejected, match="was posted by"):
        height.book.add_release(forged, height.task)
    height.store_release(forged)
    assert_refused(height, ReleaseError, release=forged, commitment=commitment)


def test_a_release_not_matching_the_test_set_commitment_is_refused(height):
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.anchor.hash)
    wrong = height.release([commitment], test_set_digest=keccak(b"another test set"))
    with pytest.raises(SolutionRejected, match="does not match the task's commitment"):
        height.book.add_release(wrong, height.task)
    height.store_release(wrong)
    assert_refused(height, ReleaseError, release=wrong, commitment=commitment)


def test_a_block_whose_release_is_unknown_is_refused(height):
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.anchor.hash)
    unknown = height.release([commitment])
    with pytest.raises(DataUnavailableError):
        produce_pole_block(
            height.chain, [], signer=keys.PrivateKey(MINER.key), task_id=1,
            model_commitment=commitment,
            train_bps=height.train_bps, test_bps=height.test_bps, release_digest=unknown.digest,
        )


def test_every_release_the_poster_signed_verifies_blocks_on_every_node(height):
    """A poster signing two releases for one anchor must not split the nodes."""
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.anchor.hash)
    first = height.release([commitment, keccak(b"someone")])
    second = height.release([commitment])
    assert height.book.add_release(first, height.task)
    assert height.book.add_release(second, height.task)
    assert not height.book.add_release(second, height.task)  # known
    assert height.book.release_for(1, height.anchor.hash) == first  # closes announcements
    block = height.seal(release=second, commitment=commitment).block
    assert height.chain.get_canonical_head() == block.header


def test_resending_variants_of_one_block_costs_one_evaluation(height, monkeypatch):
    import miner.seal_verifier as seal_verifier

    calls = []
    real = seal_verifier.evaluate_integer_model
    monkeypatch.setattr(
        seal_verifier, "evaluate_integer_model", lambda *a: calls.append(1) or real(*a)
    )
    for claim in range(height.test_bps + 1, height.test_bps + 6):  # five invalid variants
        assert_refused(height, AccuracyMismatchError, test_bps=claim)
    assert len(calls) == 2  # training set and test set, once
    height.seal()  # the honest variant reuses the same evaluation
    assert len(calls) == 2


def test_a_refusal_names_the_rule_and_the_values(height):
    claim = height.test_bps + 25
    with pytest.raises(AccuracyMismatchError) as refusal:
        height.seal(test_bps=claim)
    assert str(refusal.value) == f"claimed test accuracy {claim} bps, evaluated {height.test_bps} bps"
