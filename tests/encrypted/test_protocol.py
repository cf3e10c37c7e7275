"""Encrypted tasks, protocol half (miner/encrypted_tasks.py, pole_chain/node/key_book.py)."""
from __future__ import annotations

import numpy as np
import pytest
from eth_utils import keccak, to_canonical_address

from miner.datasets import encode_dataset, load_builtin, split_dataset
from miner.encrypted_tasks import (
    EncryptedFormatError,
    EncryptedTaskError,
    KeyBundle,
    KeyRequest,
    TrainingSetUnavailable,
    bundle_for,
    check_bundle,
    decode_encrypted_training_set,
    decode_training_blob,
    decrypted_training_set,
    encrypt_training_set,
    resolve_training_set,
)
from miner.integer_eval import evaluate_integer_model
from miner.ipfe import IPFEDecryptError, decrypt_projections, setup, sml_keys, table_for
from miner.messages import MessageError
from miner.sml import sml_for
from pole_chain.node.key_book import KeyBook, KeyRequestRejected
from vm_hooks.genesis import dev_accounts

ACCOUNTS = dev_accounts()
POSTER, MINER, OTHER = ACCOUNTS[0], ACCOUNTS[1], ACCOUNTS[2]
CHAIN_ID = 1337
ANCHOR = keccak(b"anchor")
TASK_ID = 1


class _Task:
    task_id = TASK_ID
    poster = to_canonical_address(POSTER.address)


@pytest.fixture(scope="module")
def iris():
    train, _ = split_dataset(load_builtin("iris"), 0.2, 0)
    encrypted, msk = encrypt_training_set(train)
    return train, encrypted, msk


def _request(account=MINER, anchor=ANCHOR):
    return KeyRequest.sign(chain_id=CHAIN_ID, task_id=TASK_ID, anchor_hash=anchor, private_key=account.key)


def _check(bundle, encrypted, miner=MINER):
    address = to_canonical_address(miner.address)
    return check_bundle(bundle, chain_id=CHAIN_ID, task_id=TASK_ID, anchor_hash=ANCHOR, miner=address,
                        poster=_Task.poster, encrypted=encrypted, sml=sml_for(ANCHOR, address, encrypted.d))


def test_container_round_trips_and_commits_to_the_clear_set(iris):
    train, encrypted, _ = iris
    blob = encrypted.encode()
    again = decode_training_blob(blob)
    assert again.encode() == blob and again.n == train.n and again.d == train.d
    assert np.array_equal(again.labels, train.labels)  # labels in clear
    clear = encode_dataset(train)
    store = {keccak(blob): blob}
    with pytest.raises(TrainingSetUnavailable, match="reveals it with the release"):
        resolve_training_set(keccak(blob), store.get)
    store[keccak(clear)] = clear
    assert encode_dataset(resolve_training_set(keccak(blob), store.get)) == clear


@pytest.mark.parametrize("cut", [0, 3, 40, -1])
def test_malformed_container_is_a_clear_error(iris, cut):
    blob = iris[1].encode()
    with pytest.raises(EncryptedFormatError):
        decode_encrypted_training_set(blob[:cut] if cut >= 0 else blob + b"\0")


def test_tampered_ciphertexts_are_refused(iris):
    blob = bytearray(iris[1].encode())
    blob[-33] = 0x05  # the prefix of the last ciphertext's last point: not 02, 03 or the identity
    with pytest.raises(EncryptedFormatError):
        decode_encrypted_training_set(bytes(blob)).ciphertexts()


def test_miner_with_its_keys_trains_on_exactly_its_sml_outputs(iris):
    train, encrypted, msk = iris
    miner = to_canonical_address(MINER.address)
    bundle = bundle_for(msk, _request(), private_key=POSTER.key)
    keys = _check(KeyBundle.decode(bundle.encode()), encrypted)
    sml = sml_for(ANCHOR, miner, train.d)
    indexed, decrypted = decrypted_training_set(encrypted, keys, sml)
    assert np.array_equal(decrypted.apply_int(indexed.features), sml.apply_int(train.features))
    assert np.array_equal(decrypted.apply_int(indexed.features[7:20]), sml.apply_int(train.features[7:20]))


def test_without_keys_for_the_anchor_nothing_decrypts(iris):
    train, encrypted, msk = iris
    miner = to_canonical_address(MINER.address)
    _, foreign = setup(train.d)  # keys of another master key (another task)
    table = table_for(encrypted.ciphertexts().group, train.d)
    with pytest.raises(IPFEDecryptError, match="another master public key"):
        decrypt_projections(encrypted.ciphertexts(), sml_keys(foreign, ANCHOR, miner), table)
    other_anchor = sml_keys(msk, keccak(b"another anchor"), miner)  # keys for another anchor
    bundle = KeyBundle.sign(chain_id=CHAIN_ID, task_id=TASK_ID, anchor_hash=ANCHOR, miner=miner,
                            keys=other_anchor.to_bytes(), private_key=POSTER.key)
    with pytest.raises(MessageError, match="not for this miner's SML rows"):
        _check(bundle, encrypted)


def test_another_miners_keys_give_its_projections_and_fail_our_sml(iris):
    train, encrypted, msk = iris
    mine, theirs = (to_canonical_address(a.address) for a in (MINER, OTHER))
    their_bundle = bundle_for(msk, _request(OTHER), private_key=POSTER.key)
    with pytest.raises(MessageError, match="for"):  # bound to the other miner
        _check(their_bundle, encrypted)
    keys = their_bundle.functional_keys()
    table = table_for(encrypted.ciphertexts().group, train.d)
    projections = decrypt_projections(encrypted.ciphertexts(), keys, table)
    assert np.array_equal(np.maximum(projections, 0), sml_for(ANCHOR, theirs, train.d).apply_int(train.features))
    assert not np.array_equal(np.maximum(projections, 0), sml_for(ANCHOR, mine, train.d).apply_int(train.features))
    # Training on them under our own SML: what consensus computes is our SML's outputs, so
    # a model fitted to theirs is checked against other inputs (the claim cannot match).
    from miner.encrypted_tasks import DecryptedSML, _index_features
    from miner.datasets import Dataset
    ours = sml_for(ANCHOR, mine, train.d)
    fake = DecryptedSML(ours, np.maximum(projections, 0))
    indexed = Dataset(features=_index_features(train.n, train.d), labels=train.labels, num_classes=train.num_classes)
    assert not np.array_equal(fake.apply_int(indexed.features), ours.apply_int(train.features))


def test_bundle_must_be_signed_by_the_poster(iris):
    _, encrypted, msk = iris
    forged = bundle_for(msk, _request(), private_key=OTHER.key)
    with pytest.raises(MessageError, match="not the task's poster"):
        _check(forged, encrypted)
    book = KeyBook()
    with pytest.raises(KeyRequestRejected, match="poster"):
        book.add_bundle(forged, _Task(), CHAIN_ID)
    assert book.bundle(TASK_ID, ANCHOR, forged.miner) is None


@pytest.mark.parametrize("garbage", [b"", b"\x03", b"\x03\xc0", b"\x04" + b"\x00" * 40, bytes(600)])
def test_malformed_key_messages_are_clear_errors(garbage):
    for cls in (KeyRequest, KeyBundle):
        with pytest.raises(MessageError):
            cls.decode(garbage)


def test_malformed_keys_in_a_signed_bundle_change_nothing(iris):
    miner = to_canonical_address(MINER.address)
    bundle = KeyBundle.sign(chain_id=CHAIN_ID, task_id=TASK_ID, anchor_hash=ANCHOR, miner=miner,
                            keys=b"IPFK junk", private_key=POSTER.key)
    book = KeyBook()
    with pytest.raises(MessageError, match="KeyBundle keys"):
        book.add_bundle(bundle, _Task(), CHAIN_ID)
    assert book.bundle(TASK_ID, ANCHOR, miner) is None


def test_key_book_stores_one_request_per_miner_and_checks_signatures():
    book = KeyBook()
    request = _request()
    assert book.add_request(request, _Task(), CHAIN_ID) is True
    assert book.add_request(request, _Task(), CHAIN_ID) is False
    with pytest.raises(MessageError):
        book.add_request(request, _Task(), CHAIN_ID + 1)
    assert book.requests(TASK_ID, ANCHOR) == [request]


def test_too_wide_tasks_are_refused():
    from miner.ipfe import IPFEBoundError
    from miner.encrypted_tasks import check_encryptable

    check_encryptable(784)
    with pytest.raises(IPFEBoundError):
        check_encryptable(5000)
    with pytest.raises(EncryptedTaskError):
        check_encryptable(2000)
