"""Key requests and key bundles of an encrypted task over a real node's JSON-RPC.

One `pole node --dev` process for the module (real HTTP); the data node posts an encrypted
iris task on it with post_task(encrypt=True) and its keys are served by the real key service
(pole_chain/clients/key_service.py); the miner side is miner/key_requests.py, over web3's
`w3.pole`. Malformed bytes go in as raw JSON-RPC bodies. The tests share the one task, so
each test that stores a request or a bundle uses its own miner account, and each refusal is
checked to leave what the node stores (pole_keyRequests, pole_getKeys) as it was.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from eth_utils import encode_hex, to_canonical_address
from web3 import Web3
from web3.exceptions import Web3RPCError

from miner.bonds import ensure_bonded
from miner.datasets import Dataset, decode_dataset
from miner.encrypted_tasks import (
    EncryptedTrainingSet,
    KeyBundle,
    KeyRequest,
    bundle_for,
    decode_encrypted_training_set,
)
from miner.ipfe import MasterSecretKey
from miner.key_requests import KeysNotServed, obtain_training_inputs
from miner.pole_module import attach_pole, error_code, error_message
from miner.sml import sml_for
from pole_chain.clients.data_node import DataNodeError, load_local_task, post_task, release, task_dir
from pole_chain.clients.key_service import CLEAR_TRAIN_FILE, KeyService, load_master_key
from tests.encrypted import bundle_bytes
from tests.node import NodeProcess
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID
from vm_hooks.task import Task

ACCOUNTS = dev_accounts()
POSTER = ACCOUNTS[0]
#: Bonded before the task is posted; one per test that stores something.
BONDED = ACCOUNTS[1:7]
UNBONDED = ACCOUNTS[7]
INVALID_PARAMS, SERVER_ERROR, RESOURCE_NOT_FOUND = -32602, -32000, -32001


@dataclass(frozen=True)
class PostedTask:
    """The encrypted task on the node, and what its data node keeps."""

    w3: Web3
    node: NodeProcess
    task: Task  # with its anchor
    msk: MasterSecretKey
    clear: Dataset  # the clear training set, the data node's secret until the release
    encrypted: EncryptedTrainingSet
    workdir: Path

    @property
    def anchor(self) -> bytes:
        return self.task.anchor.hash

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The posted model's input, from the spec the data node keeps with the task."""
        return load_local_task(self.workdir, self.task.task_id).spec().input_shape

    def key_service(self, **kwargs) -> KeyService:
        return KeyService(self.w3, POSTER, self.task.task_id, self.msk, self.input_shape, **kwargs)

    def requests(self, anchor: bytes | None = None) -> list[bytes]:
        return self.w3.pole.key_requests(self.task.task_id, anchor or self.anchor)

    def request(self, account, *, task_id: int | None = None, anchor: bytes | None = None,
                chain_id: int = CHAIN_ID) -> KeyRequest:
        return KeyRequest.sign(chain_id=chain_id, task_id=task_id or self.task.task_id,
                               anchor_hash=anchor or self.anchor, private_key=account.key)


@pytest.fixture(scope="module")
def posted(tmp_path_factory) -> PostedTask:
    node = NodeProcess(None, dev=True).start()
    try:
        w3 = attach_pole(node.web3())
        for account in BONDED:
            ensure_bonded(w3, account)
        workdir = tmp_path_factory.mktemp("data-node")
        task_id = post_task(
            w3, POSTER, dataset="iris", model="logreg", reward_wei=10**18, min_train_bps=8000,
            time_limit_s=600, solutions_wanted=2, seed=3, workdir=workdir, encrypt=True,
        )
        task = w3.pole.best_task()
        assert task is not None and task.task_id == task_id and task.anchor is not None
        directory = task_dir(workdir, task_id)
        encrypted = decode_encrypted_training_set(w3.pole.get_blob(task.dataset_digest))
        yield PostedTask(w3, node, task, load_master_key(directory),
                         decode_dataset(Path(directory, CLEAR_TRAIN_FILE).read_bytes()), encrypted, workdir)
    finally:
        node.stop()


def refusal(call, *args) -> tuple[int, str]:
    """(code, message) of the node's JSON-RPC error for `call(*args)`."""
    with pytest.raises(Web3RPCError) as raised:
        call(*args)
    return error_code(raised.value), error_message(raised.value)


def raw_error(node: NodeProcess, method: str, *params) -> dict:
    """The error object of a raw JSON-RPC call (for bytes web3 would not send)."""
    response = node.rpc(method, list(params))
    assert "result" not in response, response
    return response["error"]


# -- key requests ------------------------------------------------------------------------


def test_request_for_an_anchor_that_does_not_exist_is_refused_and_stores_nothing(posted):
    before = posted.requests()
    future = secrets.token_bytes(32)  # a block the chain has not made (yet)
    request = posted.request(BONDED[0], anchor=future)
    code, message = refusal(posted.w3.pole.request_keys, request.encode())
    assert code == RESOURCE_NOT_FOUND
    assert message == f"unknown anchor block {encode_hex(future)}"
    assert posted.requests(future) == []
    assert posted.requests() == before


def test_request_naming_another_block_or_task_is_refused(posted):
    before = posted.requests()
    genesis = bytes(posted.w3.eth.get_block(0)["hash"])
    parent = bytes(posted.w3.eth.get_block(posted.task.anchor.number - 1)["hash"])
    for anchor in (genesis, parent):  # blocks that exist but anchor no task
        code, message = refusal(posted.w3.pole.request_keys, posted.request(BONDED[0], anchor=anchor).encode())
        assert code == SERVER_ERROR
        assert message == (f"block {encode_hex(anchor)} is not the anchor of task "
                           f"{posted.task.task_id} (it anchors none)")
        assert posted.requests(anchor) == []
    later_task = posted.task.task_id + 1  # the right anchor, for a task it does not anchor
    code, message = refusal(posted.w3.pole.request_keys, posted.request(BONDED[0], task_id=later_task).encode())
    assert code == SERVER_ERROR
    assert f"is not the anchor of task {later_task} (it anchors {posted.task.task_id})" in message
    assert posted.requests() == before


def test_request_signed_for_another_chain_is_refused(posted):
    before = posted.requests()
    request = posted.request(BONDED[0], chain_id=CHAIN_ID + 1)
    code, message = refusal(posted.w3.pole.request_keys, request.encode())
    assert code == SERVER_ERROR
    assert message == f"KeyRequest is for chain {CHAIN_ID + 1}, expected {CHAIN_ID}"
    assert posted.requests() == before


def _malformed_requests(posted: PostedTask) -> list[tuple[str, str]]:
    """(0x-hex param, the start of the node's message)."""
    valid = posted.request(BONDED[0]).encode()
    return [
        ("0x", "malformed KeyRequest: empty message"),
        ("0x03", "malformed KeyRequest: "),
        (encode_hex(b"\x03junk bytes, not RLP"), "malformed KeyRequest: "),
        (encode_hex(valid[:-7]), "malformed KeyRequest: truncated, its body declares 128 bytes and 121 arrived"),
        (encode_hex(valid + b"\x00"), "malformed KeyRequest: "),  # trailing bytes
        (encode_hex(b"\x01" + valid[1:]), "malformed KeyRequest: unknown message type 0x01"),
        (encode_hex(b"\x03" + bytes(600)), "malformed KeyRequest: message is 601 bytes, limit 512"),
        ("0xzz", "invalid params: parameter 0 (request): expected 0x-prefixed hex data"),
        ("0x033", "invalid params: parameter 0 (request): hex data has an odd number of digits"),
    ]


def test_malformed_requests_are_invalid_params_and_change_nothing(posted):
    before = posted.requests()
    for param, expected in _malformed_requests(posted):
        error = raw_error(posted.node, "pole_requestKeys", param)
        assert error["code"] == INVALID_PARAMS, (param, error)
        assert error["message"].startswith(expected), (param, error)
        assert "KeyRequest: malformed" not in error["message"]  # said once
    assert posted.requests() == before


def test_request_with_a_broken_signature_is_refused(posted):
    before = posted.requests()
    valid = posted.request(BONDED[0])
    forged = valid.copy(miner=to_canonical_address(BONDED[1].address))  # claims another miner
    code, message = refusal(posted.w3.pole.request_keys, forged.encode())
    assert code == SERVER_ERROR and message.startswith("KeyRequest signed by ")
    assert posted.requests() == before


def test_a_valid_request_is_stored_once(posted):
    request = posted.request(BONDED[1])
    assert posted.w3.pole.request_keys(request.encode()) is True
    assert posted.w3.pole.request_keys(request.encode()) is False
    stored = posted.requests()
    assert stored.count(request.encode()) == 1
    assert KeyRequest.decode(stored[stored.index(request.encode())]).verify(CHAIN_ID).miner == request.miner


# -- key bundles -------------------------------------------------------------------------


def test_bundle_not_signed_by_the_poster_is_refused(posted):
    request = posted.request(BONDED[2])
    forged = bundle_for(posted.msk, request, posted.input_shape, private_key=BONDED[2].key)  # the miner signs its own keys
    code, message = refusal(posted.w3.pole.put_keys, forged.encode())
    assert code == SERVER_ERROR
    assert message == (f"KeyBundle signed by {encode_hex(forged.poster)}, task {posted.task.task_id}'s "
                       f"poster is {encode_hex(to_canonical_address(POSTER.address))}")
    assert posted.w3.pole.get_keys(posted.task.task_id, posted.anchor, request.miner) is None


def test_malformed_bundles_change_nothing(posted):
    miner = to_canonical_address(BONDED[2].address)
    good = bundle_for(posted.msk, posted.request(BONDED[2]), posted.input_shape, private_key=POSTER.key)
    short = bundle_bytes(good, scalars=good.scalars[:-32])  # a scalar short of its SML's rows
    encoded = good.encode()
    for param, reason in (
        ("0x04", "malformed KeyBundle: "),
        (encode_hex(encoded[:-40]), "malformed KeyBundle: "),
        (encode_hex(b"\x03" + encoded[1:]), "malformed KeyBundle: "),
        (encode_hex(short), f"KeyBundle must carry {len(good.scalars) // 32} scalars"),
    ):
        error = raw_error(posted.node, "pole_putKeys", param)
        assert error["code"] == INVALID_PARAMS and error["message"].startswith(reason), error
    assert posted.w3.pole.get_keys(posted.task.task_id, posted.anchor, miner) is None


def test_the_key_service_answers_a_bonded_miner_whose_keys_decrypt_its_sml(posted):
    miner_account = BONDED[3]
    miner = to_canonical_address(miner_account.address)
    sml = sml_for(posted.anchor, miner, posted.encrypted.d)
    with pytest.raises(KeysNotServed, match="requested, not served yet"):  # the miner asks
        obtain_training_inputs(posted.w3, miner_account, posted.task, posted.encrypted, sml, CHAIN_ID)
    served = []
    service = posted.key_service(say=served.append)
    assert service.serve() >= 1  # (a request of another test may be answered too)
    assert (posted.anchor, miner) in service.served
    raw = posted.w3.pole.get_keys(posted.task.task_id, posted.anchor, miner)
    bundle = KeyBundle.decode(raw).verify(CHAIN_ID)
    assert (bundle.task_id, bundle.anchor_hash, bundle.miner) == (posted.task.task_id, posted.anchor, miner)
    assert bundle.poster == to_canonical_address(POSTER.address)
    assert posted.w3.pole.get_keys(posted.task.task_id, posted.anchor,
                                   to_canonical_address(BONDED[4].address)) is None
    assert posted.w3.pole.put_keys(raw) is False  # the same bundle again: stored once
    assert service.serve() == 0  # answered already

    indexed, decrypted = obtain_training_inputs(posted.w3, miner_account, posted.task,
                                                posted.encrypted, sml, CHAIN_ID)
    assert np.array_equal(decrypted.apply_int(indexed.features), sml.apply_int(posted.clear.features))
    assert np.array_equal(indexed.labels, posted.clear.labels)


def test_no_keys_for_a_miner_without_a_bond(posted):
    request = posted.request(UNBONDED)
    assert posted.w3.pole.request_keys(request.encode()) is True  # the node stores it ...
    said = []
    posted.key_service(say=said.append).serve()
    assert f"task {posted.task.task_id}: no keys for {UNBONDED.address}: not bonded" in said
    assert posted.w3.pole.get_keys(posted.task.task_id, posted.anchor, request.miner) is None  # ... no keys



def test_release_without_auto_mode_serves_the_keys_asked_for_and_says_to_wait(posted):
    """`pole task release` without --auto on an encrypted task: nothing can be announced
    before keys exist, so it serves the waiting requests once and says to use auto mode."""
    request = posted.request(BONDED[5])
    assert posted.w3.pole.request_keys(request.encode()) is True
    with pytest.raises(DataNodeError, match=r"miner\(s\) given keys so far\): the miners of an "
                       "encrypted task train only once this data node has served their keys"):
        release(posted.w3, POSTER, posted.task.task_id, posted.workdir)
    assert posted.w3.pole.get_keys(posted.task.task_id, posted.anchor, request.miner) is not None
