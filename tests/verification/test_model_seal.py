"""The model checks of a PoLe seal, with real training, real signatures and a real chain.

Each cheat of issue #3 is produced the way a cheating miner or data node would, then refused
when the block is validated (nodes validate what they produce exactly as what they import).
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_utils import ValidationError, keccak

from miner.datasets import encode_dataset, load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model
from miner.integer_model import encode_model
from miner.messages import Release, SolutionAnnouncement, commitment_for
from miner.model_spec import build_spec, model_spec_canonical_bytes
from miner.seal_verifier import ModelSealVerifier
from miner.sml import sml_for
from miner.training import train_model
from pole_chain.node.blob_store import BlobStore
from pole_chain.chain.block_production import produce_idle_block, produce_pole_block
from pole_chain.chain.opening import open_chain
from vm_hooks.params import CHAIN_ID, REGISTRY_ADDRESS
from pole_chain.chain.database import open_database
from vm_hooks.genesis import dev_accounts
from pole_chain.node.solution_book import SolutionBook, SolutionRejected
from vm_hooks.registry_calls import encode_call, best_open_task

from tests.chain.conftest import FAST_IDLE, head_state, sign

POSTER = dev_accounts()[0]
MINER = dev_accounts()[1]
COPIER = dev_accounts()[2]
MIN_TRAIN_BPS = 9_000


def address(account) -> bytes:
    return bytes.fromhex(account.address[2:])


@dataclass
class Height:
    chain: object
    book: SolutionBook
    train: object
    test: object
    test_blob: bytes
    model_blob: bytes
    train_bps: int
    test_bps: int

    @property
    def parent(self):
        return self.chain.get_canonical_head()

    @property
    def task(self):
        return best_open_task(head_state(self.chain))

    def release(self, admitted, key=POSTER.key, test_set_digest=None) -> Release:
        release = Release.sign(
            chain_id=CHAIN_ID, task_id=1, parent_hash=self.parent.hash,
            test_set_digest=test_set_digest or keccak(self.test_blob),
            admitted=admitted, private_key=key,
        )
        return release

    def seal(self, *, coinbase=address(MINER), model_blob=None, release=None,
             train_bps=None, test_bps=None, commitment=None):
        model_blob = model_blob or self.model_blob
        commitment = commitment or self.book.reveal_model(model_blob, coinbase, self.parent.hash)
        if release is None:
            release = self.release([commitment])
            self.book.add_release(release, self.task)
        return produce_pole_block(
            self.chain, [], coinbase=coinbase, task_id=1, model_commitment=commitment,
            train_bps=self.train_bps if train_bps is None else train_bps,
            test_bps=self.test_bps if test_bps is None else test_bps,
            release_digest=release.digest,
        )

    def store_release(self, release: Release) -> None:
        # Written straight to the book's index the way an honest release is stored, so the
        # verifier, not the book's own admission checks, is what must refuse the block.
        digest = self.book.blobs.put(release.encode())
        from pole_chain.node.solution_book import _RELEASE_KEY
        self.book._db[_RELEASE_KEY + digest[:24]] = digest


@pytest.fixture(scope="module")
def trained():
    digits = load_builtin("digits")
    train, test = split_dataset(digits, 0.2, seed=7)
    spec = build_spec("mlp", train.d, train.num_classes, digits.image_shape)
    return digits, train, test, spec


@pytest.fixture
def height(trained):
    _digits, train, test, spec = trained
    db = open_database(None)
    blobs = BlobStore(None)
    book = SolutionBook(db, blobs)
    chain = open_chain(db, dev=False, verifier=ModelSealVerifier(book), idle=FAST_IDLE)
    train_blob, test_blob = encode_dataset(train), encode_dataset(test)
    blobs.put(train_blob)
    blobs.put(test_blob)
    spec_digest = blobs.put(model_spec_canonical_bytes(spec))
    post = sign(chain, {
        "to": REGISTRY_ADDRESS, "value": 10**18, "nonce": 0,
        "data": encode_call("post_task", [spec_digest, keccak(train_blob), keccak(test_blob), MIN_TRAIN_BPS, 3_600, 1]),
    })
    produce_idle_block(chain, [post])
    parent = chain.get_canonical_head()
    sml = sml_for(parent.hash, address(MINER), train.d)
    result = train_model(spec, train, sml, target_train_bps=9_800, time_limit_s=60, seed=1)
    return Height(
        chain=chain, book=book, train=train, test=test, test_blob=test_blob,
        model_blob=encode_model(result.integer_model), train_bps=result.train_bps,
        test_bps=evaluate_integer_model(result.integer_model, sml, test),
    )


def assert_refused(height, message, **seal_args):
    head = height.chain.get_canonical_head()
    with pytest.raises(ValidationError, match=message):
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
    assert_refused(height, f"claimed test accuracy {claim} bps, evaluated {height.test_bps} bps", test_bps=claim)


def test_claimed_training_accuracy_above_the_true_one_is_refused(height):
    claim = height.train_bps + 1
    assert_refused(height, f"claimed training accuracy {claim} bps, evaluated {height.train_bps}", train_bps=claim)


def test_weights_not_matching_the_commitment_are_refused(height):
    other = bytearray(height.model_blob)
    other[-5] ^= 0x01
    honest = commitment_for(height.model_blob, address(MINER), height.parent.hash)
    # The node holds a different blob under the commitment the block claims.
    from pole_chain.node.solution_book import _MODEL_KEY
    height.book._db[_MODEL_KEY + honest] = height.book.blobs.put(bytes(other))
    assert_refused(height, "model blob does not hash to commitment", commitment=honest)


def test_a_copied_model_fails_under_the_copiers_sml(height):
    copier_sml = sml_for(height.parent.hash, address(COPIER), height.train.d)
    from miner.integer_model import decode_model
    true_train = evaluate_integer_model(decode_model(height.model_blob), copier_sml, height.train)
    assert true_train < 5_000
    assert_refused(
        height, f"training accuracy {true_train} bps is below the task's minimum",
        coinbase=address(COPIER),
    )


def test_a_model_trained_under_a_stale_parents_sml_is_refused(height, trained):
    _digits, train, _test, spec = trained
    stale_parent = height.chain.get_canonical_block_by_number(0).header
    stale_sml = sml_for(stale_parent.hash, address(MINER), train.d)
    stale = train_model(spec, train, stale_sml, target_train_bps=9_800, time_limit_s=60, seed=1)
    assert stale.train_bps >= MIN_TRAIN_BPS  # good under the stale SML...
    assert_refused(  # ...but the block is checked under its real parent's SML
        height, "below the task's minimum",
        model_blob=encode_model(stale.integer_model), train_bps=stale.train_bps,
    )


def test_an_announcement_after_the_release_is_not_admitted(height):
    honest = height.book.reveal_model(height.model_blob, address(MINER), height.parent.hash)
    release = height.release([honest])
    height.book.add_release(release, height.task)
    late_blob = height.model_blob + b""
    late_commitment = commitment_for(late_blob, address(COPIER), height.parent.hash)
    late = SolutionAnnouncement.sign(
        chain_id=CHAIN_ID, task_id=1, parent_hash=height.parent.hash,
        model_commitment=late_commitment, train_bps=9_900, private_key=COPIER.key,
    )
    with pytest.raises(SolutionRejected, match="announcements after the release are not admitted"):
        height.book.add_announcement(late, height.task)
    assert_refused(
        height, "release does not admit commitment", coinbase=address(COPIER), release=release,
    )


def test_a_release_not_signed_by_the_poster_is_refused(height):
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.parent.hash)
    forged = height.release([commitment], key=COPIER.key)
    with pytest.raises(SolutionRejected, match="not by the task's poster"):
        height.book.add_release(forged, height.task)
    height.store_release(forged)
    assert_refused(height, "release signed by 0x", release=forged, commitment=commitment)


def test_a_release_not_matching_the_test_set_commitment_is_refused(height):
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.parent.hash)
    wrong = height.release([commitment], test_set_digest=keccak(b"another test set"))
    with pytest.raises(SolutionRejected, match="does not match the task's commitment"):
        height.book.add_release(wrong, height.task)
    height.store_release(wrong)
    assert_refused(height, "does not match the task's commitment", release=wrong, commitment=commitment)


def test_a_block_whose_release_is_unknown_is_refused(height):
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.parent.hash)
    unknown = height.release([commitment])
    with pytest.raises(ValidationError, match="is not available"):
        produce_pole_block(
            height.chain, [], coinbase=address(MINER), task_id=1, model_commitment=commitment,
            train_bps=height.train_bps, test_bps=height.test_bps, release_digest=unknown.digest,
        )


def test_every_release_the_poster_signed_verifies_blocks_on_every_node(height):
    """A poster signing two releases for one height must not split the nodes."""
    commitment = height.book.reveal_model(height.model_blob, address(MINER), height.parent.hash)
    first = height.release([commitment, keccak(b"someone")])
    second = height.release([commitment])
    assert height.book.add_release(first, height.task)
    assert height.book.add_release(second, height.task)
    assert not height.book.add_release(second, height.task)  # known
    assert height.book.release_for(1, height.parent.hash) == first  # closes announcements
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
        assert_refused(height, f"claimed test accuracy {claim} bps", test_bps=claim)
    assert len(calls) == 2  # training set and test set, once
    height.seal()  # the honest variant reuses the same evaluation
    assert len(calls) == 2
