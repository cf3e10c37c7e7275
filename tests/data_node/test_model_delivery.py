"""The delivered torch module predicts exactly what the consensus evaluator predicts, on the
raw data its user has, and a delivery that cannot check the claimed test accuracy says so."""
import json

import numpy as np
import pytest
import sklearn.datasets
import torch
from eth_abi import encode as abi_encode
from eth_utils import decode_hex, encode_hex, keccak, to_checksum_address, to_hex
from web3 import Web3
from web3.providers.base import BaseProvider

from miner.datasets import (
    DIGITS_QUANTIZATION,
    BUILTIN_DATASETS,
    DatasetFormatError,
    decode_dataset,
    encode_dataset,
    load_builtin,
    split_dataset,
    split_indices,
)
from miner.integer_eval import evaluate_integer_model, integer_logits, predict
from miner.integer_model import IntegerConv2d, IntegerDense, IntegerModel, encode_model
from miner.messages import Release, commitment_for
from miner.model_spec import (
    PREDEFINED_MODELS, Conv2d, Dense, Flatten, MaxPool2d, ModelSpec, ReLU, build_spec,
    layer_shapes, model_spec_digest,
)
from miner.sml import model_sml
from miner.training import Hyperparams, train_model
from vm_hooks.params import CHAIN_ID
from vm_hooks.genesis import dev_accounts
from pole_chain.clients.data_node import prepare_task
from pole_chain.clients.model_delivery import (
    BLOB_FILE,
    META_FILE,
    DeliveredModel,
    InputContract,
    ModelDeliveryError,
    export_model,
    fetch_model,
    load_delivered_model,
)

PARENT, WINNER = bytes(range(32)), bytes([0x70]) * 20
SPLIT_SEED = 3
# digits28 is digits upsampled by the package (docs/ML.md); the others are sklearn's own arrays.
SKLEARN_LOADERS = {
    name: getattr(sklearn.datasets, f"load_{name}") for name in BUILTIN_DATASETS if name != "digits28"
}


def raw_test_rows(name, test_fraction=0.2, seed=SPLIT_SEED):
    """sklearn's own arrays for the rows the data node's split put in the test set."""
    bunch = SKLEARN_LOADERS[name]()
    test_idx, _ = split_indices(len(bunch.target), test_fraction, seed)
    return bunch.data[test_idx], bunch.target[test_idx]


@pytest.fixture(scope="module")
def digits():
    train, test = split_dataset(load_builtin("digits"), 0.2, seed=SPLIT_SEED, test_salt=bytes(32))
    return train, test


def train(spec, train_set, epochs=6):
    sml = model_sml(PARENT, WINNER, spec.input_shape, train_set.d)
    result = train_model(
        spec, train_set, sml, target_train_bps=9000, time_limit_s=30, seed=1,
        hyperparams=Hyperparams(max_epochs=epochs),
    )
    return result.integer_model, sml


@pytest.fixture(scope="module", params=PREDEFINED_MODELS)
def trained(request, digits):
    train_set, _ = digits
    return train(build_spec(request.param, train_set.d, train_set.num_classes, train_set.image_shape),
                 train_set)


def test_export_predicts_exactly_like_the_integer_evaluator(trained, digits, tmp_path):
    model, sml = trained
    train_set, test = digits
    raw, raw_labels = raw_test_rows("digits")  # load_digits() values 0..16
    assert np.array_equal(raw_labels, test.labels)
    module = export_model(model, sml, InputContract.of_dataset(train_set), tmp_path, {"task_id": 1})
    expected = predict(model, sml, test.features)
    assert np.array_equal(module.predict(raw), expected)
    assert torch.equal(module(raw), torch.from_numpy(integer_logits(model, sml, test.features)))
    assert module.accuracy_bps(raw, raw_labels) == evaluate_integer_model(model, sml, test)
    assert module.dataset_accuracy_bps(test) == evaluate_integer_model(model, sml, test)
    assert module.accuracy_bps(raw, raw_labels) > 5000  # it learned something

    for prefer in ("safetensors", "pt"):
        loaded = load_delivered_model(tmp_path, prefer=prefer)
        assert np.array_equal(loaded.predict(raw), expected)
    # any dtype holding the raw values, torch tensors, and the 8x8 image shape are raw input too
    assert np.array_equal(module.predict(raw.astype(np.float32)), expected)
    assert np.array_equal(module.predict(raw.astype(np.int64)), expected)
    assert np.array_equal(module.predict(torch.from_numpy(raw)), expected)
    assert np.array_equal(module.predict(raw.reshape(-1, 8, 8)), expected)
    assert np.array_equal(module.predict(raw.reshape(-1, 1, 8, 8)), expected)
    assert (tmp_path / BLOB_FILE).read_bytes() == encode_model(model)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["task_id"] == 1 and meta["architecture"]["num_classes"] == 10
    assert meta["input"]["features"] == 64 and meta["input"]["image_shape"] == [1, 8, 8]
    assert meta["input"]["shapes"] == [["n", 64], ["n", 1, 8, 8], ["n", 8, 8]]
    assert meta["input"]["quantization"]["rounding"] == "floor"
    assert meta["input"]["quantization"]["span"] == [16.0] * 64


def random_integer_model(spec, rng, width):
    """Committed integers of any value the format allows, for `spec`: no training involved."""
    dtype, bound = (np.int8, 127) if width == 1 else (np.int16, 32767)
    layers, shapes = [], layer_shapes(spec)
    for layer, shape in zip(spec.layers, shapes):
        if isinstance(layer, Dense):
            weight_shape = (layer.units, shape[0])
        elif isinstance(layer, Conv2d):
            weight_shape = (layer.channels, shape[0], layer.kernel, layer.kernel)
        else:
            layers.append(layer)
            continue
        weight = rng.integers(-bound, bound + 1, weight_shape).astype(dtype)
        bias = rng.integers(-(2**31), 2**31 - 1, weight_shape[0]).astype(np.int32)
        shift = int(rng.integers(0, 24))
        layers.append(IntegerDense(weight, bias, shift) if isinstance(layer, Dense)
                      else IntegerConv2d(weight, bias, shift, layer.padding))
    return IntegerModel(spec, tuple(layers))


@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("kind", PREDEFINED_MODELS)
def test_delivered_module_and_consensus_agree_bit_for_bit_on_random_inputs(kind, width, tmp_path):
    """Every built-in model kind, random committed integers, random raw and 0..255 inputs."""
    rng = np.random.default_rng([width, PREDEFINED_MODELS.index(kind)])
    spec = build_spec(kind, 64, 10, (1, 8, 8))
    model = random_integer_model(spec, rng, width)
    sml = model_sml(rng.bytes(32), rng.bytes(20), spec.input_shape, 64)
    export_model(model, sml, InputContract(64, (1, 8, 8), DIGITS_QUANTIZATION), tmp_path, {})
    module = load_delivered_model(tmp_path)
    raw = np.concatenate([rng.uniform(-3.0, 19.0, (100, 64)), rng.integers(0, 17, (100, 64))])
    features = DIGITS_QUANTIZATION.apply(raw)
    logits = integer_logits(model, sml, features)
    assert torch.equal(module(raw), torch.from_numpy(logits))
    assert np.array_equal(module.predict(raw), predict(model, sml, features))
    uniform = rng.integers(0, 256, (200, 64))
    assert np.array_equal(module.features_logits(uniform), integer_logits(model, sml, uniform))


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
    sml = model_sml(PARENT, WINNER, spec.input_shape, 64)
    export_model(model, sml, InputContract(64), tmp_path, {})  # raw input = the 0..255 features
    loaded = load_delivered_model(tmp_path)
    assert torch.equal(loaded(test.features), torch.from_numpy(integer_logits(model, sml, test.features)))
    assert np.array_equal(loaded.predict(test.features), predict(model, sml, test.features))


def test_raw_input_is_checked(trained):
    model, sml = trained
    plain = DeliveredModel.from_integer_model(model, sml, InputContract(64))  # no quantisation
    with pytest.raises(ValueError, match="0..255"):
        plain.predict(np.full((1, 64), 256))
    with pytest.raises(ValueError, match="integers"):
        plain.predict(np.full((1, 64), 0.5))
    with pytest.raises(ValueError, match="shape"):
        plain.predict(np.zeros((1, 63), dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        plain.predict(np.zeros((1, 8, 8), dtype=np.int64))  # the contract names no image shape

    quantized = DeliveredModel.from_integer_model(
        model, sml, InputContract(64, (1, 8, 8), DIGITS_QUANTIZATION)
    )
    nan = np.zeros((1, 64))
    nan[0, 3] = np.nan
    with pytest.raises(DatasetFormatError, match="NaN"):
        quantized.predict(nan)
    with pytest.raises(DatasetFormatError, match="real numbers"):
        quantized.predict(np.full((1, 64), "1"))
    with pytest.raises(ValueError, match="shape"):
        quantized.predict(np.zeros((1, 4, 16)))
    # out-of-range raw values saturate exactly as the data node's quantisation does
    assert quantized.quantize(np.array([[-5.0] * 32 + [99.0] * 32])).tolist() == [[0] * 32 + [255] * 32]


def test_load_refuses_a_directory_without_a_model(tmp_path):
    with pytest.raises(ModelDeliveryError, match="no delivered model"):
        load_delivered_model(tmp_path)


# --- fetch_model against a scripted node: the checks that make delivery trustless ---------
# An honest node cannot serve a tampered blob or an inflated result, so these answers are
# scripted behind a real Web3 (its `pole` module and formatters included); the honest path
# against a real node is in test_end_to_end.py.


class ScriptedNode(BaseProvider):
    """A JSON-RPC provider answering from a FakeChain: method m is chain.rpc_m(*params)."""

    def __init__(self, chain):
        super().__init__()
        self.chain = chain

    def make_request(self, method, params):
        try:
            result = getattr(self.chain, f"rpc_{method}")(*params)
        except LookupError as missing:
            return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32001, "message": str(missing.args[0])}}
        return {"jsonrpc": "2.0", "id": 1, "result": result}


class FakeChain:
    """The answers fetch_model needs: a settled task, its block, the model, the release, the
    training and test sets (blobs by digest)."""

    def __init__(self, model, train_set, test_set, *, claimed_test_bps=None):
        self.blob = encode_model(model)
        train_blob, self.test_blob = encode_dataset(train_set), encode_dataset(test_set)
        self.blobs = {keccak(train_blob): train_blob, keccak(self.test_blob): self.test_blob}
        self.commitment = commitment_for(self.blob, WINNER, PARENT)
        self.poster = dev_accounts()[0]
        self.release = Release.sign(
            chain_id=CHAIN_ID, task_id=3, anchor_hash=PARENT, test_set_digest=keccak(self.test_blob),
            admitted=[self.commitment], private_key=self.poster.key,
        )
        self.release_digest = self.release.digest[:24] + bytes(8)  # what the winning seal carries
        self.claimed_test_bps = (
            evaluate_integer_model(model, model_sml(PARENT, WINNER, model.spec.input_shape, test_set.d), test_set)
            if claimed_test_bps is None else claimed_test_bps
        )
        self.dataset_digest, self.test_set_commitment = keccak(train_blob), keccak(self.test_blob)
        self.model_spec = model_spec_digest(model.spec)
        self.status = "settled"
        self.w3 = Web3(ScriptedNode(self))

    def rpc_eth_chainId(self):
        return to_hex(CHAIN_ID)

    def rpc_eth_getBlockByNumber(self, number, full):
        """Block 7 won the task; its parent, block 6 (hash PARENT), is the task's anchor."""
        if number == "0x6":
            return {"number": "0x6", "hash": encode_hex(PARENT), "parentHash": encode_hex(bytes(32)),
                    "mixHash": encode_hex(bytes(32))}
        return {"number": "0x7", "hash": encode_hex(bytes([7]) * 32), "parentHash": encode_hex(PARENT),
                "mixHash": encode_hex(self.commitment)}

    def rpc_eth_call(self, transaction, block):
        """The registry's best_anchor() at the winning block's parent: (task 3, block 6)."""
        assert block == "0x6"
        return encode_hex(abi_encode(["uint256", "uint256"], [3, 6]))

    def rpc_pole_task(self, task_id):
        result = {
            "winner": to_checksum_address(WINNER), "modelCommitment": encode_hex(self.commitment),
            "trainBps": to_hex(9000), "testBps": to_hex(self.claimed_test_bps),
            "releaseDigest": encode_hex(self.release_digest), "blockNumber": "0x7",
        }
        return {
            "id": task_id, "poster": self.poster.address, "reward": to_hex(10**18),
            "modelSpec": encode_hex(self.model_spec), "datasetDigest": encode_hex(self.dataset_digest),
            "testSetCommitment": encode_hex(self.test_set_commitment), "minTrainBps": "0x0",
            "timeLimit": "0x3c", "solutionsWanted": "0x1", "postedAt": "0x0", "deadline": "0x3c",
            "status": self.status, "result": result if self.status == "settled" else None,
            "anchor": None,
        }

    def rpc_pole_getModel(self, commitment):
        return encode_hex(self.blob)

    def rpc_pole_getRelease(self, task_id, parent):
        return encode_hex(self.release.encode())

    def rpc_pole_getBlob(self, digest):
        if decode_hex(digest) not in self.blobs:
            raise LookupError("withheld until its release")
        return encode_hex(self.blobs[decode_hex(digest)])


def test_fetch_model_checks_and_exports_the_committed_model(trained, digits, tmp_path):
    model, _ = trained
    train_set, test = digits
    chain = FakeChain(model, train_set, test)
    delivery = fetch_model(chain.w3, 3, tmp_path)
    assert delivery.meta["checked_test_bps"] == chain.claimed_test_bps
    assert delivery.meta["test_accuracy_checked"] is True and delivery.warning is None
    loaded = load_delivered_model(tmp_path)
    assert loaded.dataset_accuracy_bps(test) == chain.claimed_test_bps
    assert loaded.accuracy_bps(*raw_test_rows("digits")) == chain.claimed_test_bps
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["winner"].lower() == "0x" + WINNER.hex() and meta["block_number"] == 7
    assert meta["test_accuracy_checked"] is True and meta["test_accuracy_unchecked_reason"] is None


@pytest.mark.parametrize("dataset, kind", [
    ("digits", "mlp"), ("digits", "cnn"), ("iris", "mlp"), ("wine", "mlp"), ("breast_cancer", "logreg"),
])
def test_sklearn_raw_arrays_give_the_claimed_test_accuracy(dataset, kind, tmp_path):
    """The data node's own split; the delivery reads the quantisation from the task's
    training set; sklearn's arrays, as its user has them, score exactly the claim."""
    prepared = prepare_task(dataset, kind, test_fraction=0.2, seed=SPLIT_SEED, test_salt=bytes(32))
    model, _ = train(prepared.spec, prepared.train, epochs=8)
    chain = FakeChain(model, decode_dataset(prepared.train_blob), decode_dataset(prepared.test_blob))
    fetch_model(chain.w3, 3, tmp_path)
    raw, labels = raw_test_rows(dataset)
    claimed = chain.claimed_test_bps
    assert load_delivered_model(tmp_path).accuracy_bps(raw, labels) == claimed
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["input"]["features"] == raw.shape[1] and meta["input"]["quantization"] is not None


def test_fetch_model_refusals(trained, digits, tmp_path):
    model, _ = trained
    train_set, test = digits
    chain = FakeChain(model, train_set, test)
    chain.blob = chain.blob[:-1] + bytes([chain.blob[-1] ^ 1])  # one bit of a bias
    with pytest.raises(ModelDeliveryError, match="does not hash to the on-chain commitment"):
        fetch_model(chain.w3, 3, tmp_path / "tampered")
    assert not (tmp_path / "tampered").exists()

    chain = FakeChain(model, train_set, test)
    chain.status = "open"
    with pytest.raises(ModelDeliveryError, match="task 3 is open, not settled"):
        fetch_model(chain.w3, 3, tmp_path / "open")

    chain = FakeChain(model, train_set, test, claimed_test_bps=10_000)
    with pytest.raises(ModelDeliveryError, match="claimed test accuracy 10000 bps"):
        fetch_model(chain.w3, 3, tmp_path / "inflated")

    chain = FakeChain(model, train_set, test)
    chain.blobs.pop(chain.dataset_digest)
    with pytest.raises(ModelDeliveryError, match="input contract"):
        fetch_model(chain.w3, 3, tmp_path / "no-training-set")


def withheld_test_set(chain):
    chain.blobs.pop(chain.test_set_commitment)


def no_release(chain):
    chain.rpc_pole_getRelease = lambda task_id, parent: None


def other_release(chain):
    chain.release = Release.sign(
        chain_id=CHAIN_ID, task_id=3, anchor_hash=PARENT, test_set_digest=bytes(32),
        admitted=[bytes(32)], private_key=dev_accounts()[0].key,
    )


def tampered_test_set(chain):
    chain.blobs[chain.test_set_commitment] = chain.test_blob[:-1] + bytes([chain.test_blob[-1] ^ 1])


@pytest.mark.parametrize("break_it, reason", [
    (withheld_test_set, "did not serve the released test set"),
    (no_release, "no release for task 3"),
    (other_release, "not the one the winning block answered"),
    (tampered_test_set, "does not hash to the release's digest"),
])
def test_a_delivery_that_cannot_check_the_test_accuracy_says_so(trained, digits, tmp_path,
                                                                break_it, reason):
    model, _ = trained
    train_set, test = digits
    chain = FakeChain(model, train_set, test)
    break_it(chain)
    with pytest.raises(ModelDeliveryError, match=f"cannot check the claimed test accuracy.*{reason}"):
        fetch_model(chain.w3, 3, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()

    delivery = fetch_model(chain.w3, 3, tmp_path / "unchecked", allow_unchecked=True)
    meta = json.loads((tmp_path / "unchecked" / META_FILE).read_text())
    assert meta["test_accuracy_checked"] is False and meta["checked_test_bps"] is None
    assert reason in meta["test_accuracy_unchecked_reason"]
    assert delivery.warning.startswith("WARNING: the claimed test accuracy")
    assert "NOT checked" in delivery.warning and reason in delivery.warning
    # the model itself is still the committed one
    assert (tmp_path / "unchecked" / BLOB_FILE).read_bytes() == encode_model(model)
