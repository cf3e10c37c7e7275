"""The delivered torch module predicts exactly what the consensus evaluator predicts."""
import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from eth_utils import keccak, to_canonical_address

from miner.datasets import encode_dataset, load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model, integer_logits, predict
from miner.integer_model import IntegerConv2d, IntegerDense, IntegerModel, encode_model
from miner.messages import Release, commitment_for
from miner.model_spec import (
    Conv2d, Dense, Flatten, MaxPool2d, ModelSpec, ReLU, build_spec, model_spec_digest,
)
from miner.sml import sml_for
from miner.training import Hyperparams, train_model
from miner.node_client import TaskInfo, TaskResultInfo
from vm_hooks.params import CHAIN_ID
from vm_hooks.genesis import dev_accounts
from pole_chain.clients.model_delivery import (
    BLOB_FILE,
    META_FILE,
    DeliveredModel,
    ModelDeliveryError,
    export_model,
    fetch_model,
    load_delivered_model,
)

PARENT, WINNER = bytes(range(32)), bytes([0x70]) * 20


@pytest.fixture(scope="module")
def digits():
    train, test = split_dataset(load_builtin("digits"), 0.2, seed=3, test_salt=bytes(32))
    return train, test


@pytest.fixture(scope="module", params=["logreg", "mlp", "cnn"])
def trained(request, digits):
    train, _ = digits
    spec = build_spec(request.param, train.d, train.num_classes, train.image_shape)
    sml = sml_for(PARENT, WINNER, train.d)
    result = train_model(
        spec, train, sml, target_train_bps=9000, time_limit_s=30, seed=1,
        hyperparams=Hyperparams(max_epochs=6),
    )
    return result.integer_model, sml


def test_export_predicts_exactly_like_the_integer_evaluator(trained, digits, tmp_path):
    model, sml = trained
    _, test = digits
    module = export_model(model, sml, tmp_path, {"task_id": 1})
    expected = predict(model, sml, test.features)
    assert np.array_equal(module.predict(test.features), expected)
    assert torch.equal(module(test.features), torch.from_numpy(integer_logits(model, sml, test.features)))
    assert module.accuracy_bps(test) == evaluate_integer_model(model, sml, test)
    assert module.accuracy_bps(test) > 5000  # it learned something

    for prefer in ("safetensors", "pt"):
        loaded = load_delivered_model(tmp_path, prefer=prefer)
        assert np.array_equal(loaded.predict(test.features), expected)
    # float inputs with integer values are raw features too
    assert np.array_equal(module.predict(test.features.astype(np.float32)), expected)
    assert (tmp_path / BLOB_FILE).read_bytes() == encode_model(model)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["task_id"] == 1 and meta["architecture"]["num_classes"] == 10


def test_saturation_rounding_and_int16_weights_match(tmp_path, digits):
    """Random int16 weights and small shifts drive activations into saturation and ties."""
    _, test = digits
    rng = np.random.default_rng(7)
    spec = ModelSpec(
        (2, 8, 8), 10,
        (Conv2d(4, 3, "valid"), ReLU(), MaxPool2d(2), Flatten(), Dense(16), ReLU(), Dense(10)),
    )
    layers = (
        IntegerConv2d(
            rng.integers(-30000, 30000, (4, 2, 3, 3)).astype(np.int16),
            rng.integers(-(2**31), 2**31 - 1, 4).astype(np.int32), 0, "valid",
        ),
        ReLU(), MaxPool2d(2), Flatten(),
        IntegerDense(rng.integers(-128, 127, (16, 36)).astype(np.int8),
                     rng.integers(-1000, 1000, 16).astype(np.int32), 20),
        ReLU(),
        IntegerDense(rng.integers(-2, 3, (10, 16)).astype(np.int8), np.zeros(10, np.int32), 62),
    )
    model = IntegerModel(spec, layers)
    sml = sml_for(PARENT, WINNER, 64)
    export_model(model, sml, tmp_path, {})
    loaded = load_delivered_model(tmp_path)
    assert torch.equal(loaded(test.features), torch.from_numpy(integer_logits(model, sml, test.features)))
    assert np.array_equal(loaded.predict(test.features), predict(model, sml, test.features))


def test_raw_input_is_checked(trained):
    model, sml = trained
    module = DeliveredModel.from_integer_model(model, sml)
    with pytest.raises(ValueError, match="0..255"):
        module.predict(np.full((1, 64), 256))
    with pytest.raises(ValueError, match="integers"):
        module.predict(np.full((1, 64), 0.5))
    with pytest.raises(ValueError, match="shape"):
        module.predict(np.zeros((1, 63), dtype=np.int64))


def test_load_refuses_a_directory_without_a_model(tmp_path):
    with pytest.raises(ModelDeliveryError, match="no delivered model"):
        load_delivered_model(tmp_path)


# --- fetch_model against a dishonest node: the checks that make delivery trustless ---------
# An honest node cannot serve a tampered blob or an inflated result, so these answers are
# scripted; the honest path against a real node is in test_end_to_end.py.


class FakeChain:
    """The answers fetch_model needs: a settled task, its block, the model, the release."""

    def __init__(self, model, test_set, *, claimed_test_bps=None):
        self.blob = encode_model(model)
        self.test_blob = encode_dataset(test_set)
        commitment = commitment_for(self.blob, WINNER, PARENT)
        poster = dev_accounts()[0]
        self.release = Release.sign(
            chain_id=CHAIN_ID, task_id=3, parent_hash=PARENT, test_set_digest=keccak(self.test_blob),
            admitted=[commitment], private_key=poster.key,
        )
        test_bps = evaluate_integer_model(model, sml_for(PARENT, WINNER, 64), test_set)
        self.task_info = TaskInfo(
            task_id=3, poster=to_canonical_address(poster.address), reward=10**18,
            model_spec=model_spec_digest(model.spec), dataset_digest=bytes(32),
            test_set_commitment=keccak(self.test_blob), min_train_bps=0, time_limit=60,
            solutions_wanted=1, posted_at=0, deadline=60, status="settled",
            result=TaskResultInfo(
                winner=WINNER, model_commitment=commitment, train_bps=9000,
                test_bps=test_bps if claimed_test_bps is None else claimed_test_bps,
                release_digest_prefix=self.release.digest[:24], block_number=7,
            ),
        )
        block = {"number": 7, "hash": bytes([7]) * 32, "parentHash": PARENT, "mixHash": commitment}
        self.w3 = SimpleNamespace(eth=SimpleNamespace(get_block=lambda n: block, chain_id=CHAIN_ID))

    def task(self, task_id):
        return self.task_info

    def get_model(self, commitment):
        return self.blob

    def get_release(self, task_id, parent):
        return self.release.encode()

    def get_blob(self, digest):
        return self.test_blob


def test_fetch_model_checks_and_exports_the_committed_model(trained, digits, tmp_path):
    model, _ = trained
    _, test = digits
    chain = FakeChain(model, test)
    delivery = fetch_model(chain, chain.w3, 3, tmp_path)
    assert delivery.meta["checked_test_bps"] == chain.task_info.result.test_bps
    loaded = load_delivered_model(tmp_path)
    assert loaded.accuracy_bps(test) == chain.task_info.result.test_bps
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["winner"].lower() == "0x" + WINNER.hex() and meta["block_number"] == 7


def test_fetch_model_refusals(trained, digits, tmp_path):
    model, _ = trained
    _, test = digits
    chain = FakeChain(model, test)
    chain.blob = chain.blob[:-1] + bytes([chain.blob[-1] ^ 1])  # one bit of a bias
    with pytest.raises(ModelDeliveryError, match="does not hash to the on-chain commitment"):
        fetch_model(chain, chain.w3, 3, tmp_path / "tampered")
    assert not (tmp_path / "tampered").exists()

    chain = FakeChain(model, test)
    chain.task_info = replace(chain.task_info, status="open", result=None)
    with pytest.raises(ModelDeliveryError, match="task 3 is open, not settled"):
        fetch_model(chain, chain.w3, 3, tmp_path / "open")

    chain = FakeChain(model, test, claimed_test_bps=10_000)
    with pytest.raises(ModelDeliveryError, match="claimed test accuracy 10000 bps"):
        fetch_model(chain, chain.w3, 3, tmp_path / "inflated")
