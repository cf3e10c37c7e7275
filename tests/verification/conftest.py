"""A height with a real task, real training data and a trained model, for the model checks.

The node-side pieces are real: a solution book over a blob store, a ModelSealVerifier on it,
and a chain whose consensus calls that verifier on every PoLe block it validates.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from eth_keys import keys
from eth_utils import keccak

from miner.datasets import encode_dataset, load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model
from miner.integer_model import encode_model
from miner.messages import Release
from miner.model_spec import build_spec, model_spec_canonical_bytes
from miner.seal_verifier import ModelSealVerifier
from miner.sml import sml_for
from miner.training import train_model
from pole_chain.chain.block_production import produce_idle_block, produce_pole_block
from pole_chain.chain.database import open_database
from pole_chain.chain.opening import open_chain
from pole_chain.node.blob_store import BlobStore
from pole_chain.node.solution_book import SolutionBook
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID, REGISTRY_ADDRESS
from vm_hooks.registry_calls import best_open_task, encode_call
from vm_hooks.task import TaskAnchor

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
    anchor: TaskAnchor  # the block after which task 1 became best

    @property
    def parent(self):
        return self.chain.get_canonical_head()

    @property
    def task(self):
        """Task 1 with its anchor, as the node's task views report it."""
        return replace(best_open_task(head_state(self.chain)), anchor=self.anchor)

    def release(self, admitted, key=POSTER.key, test_set_digest=None, anchor_hash=None) -> Release:
        release = Release.sign(
            chain_id=CHAIN_ID, task_id=1, anchor_hash=anchor_hash or self.anchor.hash,
            test_set_digest=test_set_digest or keccak(self.test_blob),
            admitted=admitted, private_key=key,
        )
        return release

    def seal(self, *, miner=MINER, model_blob=None, release=None,
             train_bps=None, test_bps=None, commitment=None, chain=None):
        """A PoLe block by ``miner`` (a dev account: it signs as the coinbase) on the head
        of ``chain`` (default: this height's chain)."""
        coinbase = address(miner)
        model_blob = model_blob or self.model_blob
        commitment = commitment or self.book.reveal_model(model_blob, coinbase, self.anchor.hash)
        if release is None:
            release = self.release([commitment])
            self.book.add_release(release, self.task)
        return produce_pole_block(
            chain or self.chain, [], signer=keys.PrivateKey(miner.key), task_id=1,
            model_commitment=commitment,
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


@pytest.fixture(scope="session")
def trained():
    digits = load_builtin("digits")
    train, test = split_dataset(digits, 0.2, seed=7)
    spec = build_spec("mlp", train.d, train.num_classes, digits.image_shape)
    return digits, train, test, spec


@pytest.fixture
def height(trained):
    _digits, train, test, spec = trained
    return make_height(train, test, spec)


def make_height(train, test, spec, model=None) -> Height:
    """Task 1 (train, test, spec) posted on a fresh chain and a model for it: `model`, with
    claims of 9,900 bps, or else one trained behind MINER's SML, with its true accuracies."""
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
    anchor = chain.get_canonical_head()  # task 1 became best after the block that posted it
    at = TaskAnchor(anchor.block_number, anchor.hash)
    if model is not None:
        return Height(chain=chain, book=book, train=train, test=test, test_blob=test_blob,
                      model_blob=encode_model(model), train_bps=9_900, test_bps=9_900, anchor=at)
    sml = sml_for(anchor.hash, address(MINER), train.d)
    result = train_model(spec, train, sml, target_train_bps=9_800, time_limit_s=60, seed=1)
    return Height(
        chain=chain, book=book, train=train, test=test, test_blob=test_blob,
        model_blob=encode_model(result.integer_model), train_bps=result.train_bps,
        test_bps=evaluate_integer_model(result.integer_model, sml, test), anchor=at,
    )
