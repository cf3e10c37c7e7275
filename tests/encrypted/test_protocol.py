"""Encrypted tasks, protocol half (miner/encrypted_tasks.py, pole_chain/node/key_book.py)."""
from __future__ import annotations

import numpy as np
import pytest
from eth_utils import keccak, to_canonical_address

from miner.datasets import Dataset, encode_dataset, load_builtin, split_dataset
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
from miner.ipfe import IPFEDecryptError, decrypt_projections, get_group, setup, sml_keys, table_for
from miner.messages import MessageError
from miner.model_spec import build_spec
from miner.sml import LocalSML, model_sml, sml_for
from pole_chain.node.key_book import KeyBook, KeyRequestRejected
from tests.encrypted import bundle_bytes
from vm_hooks.genesis import dev_accounts

ACCOUNTS = dev_accounts()
POSTER, MINER, OTHER = ACCOUNTS[0], ACCOUNTS[1], ACCOUNTS[2]
CHAIN_ID = 1337
ANCHOR = keccak(b"anchor")
TASK_ID = 1


class _Task:
    task_id = TASK_ID
    poster = to_canonical_address(POSTER.address)


def _flat(d: int) -> tuple[int]:
    """A flat model's input: the dense SML's 2d outputs."""
    return (2 * d,)


@pytest.fixture(scope="module")
def iris():
    train, _ = split_dataset(load_builtin("iris"), 0.2, 0)
    encrypted, msk = encrypt_training_set(train)
    return train, encrypted, msk


@pytest.fixture(scope="module")
def digits_images():
    """120 8x8 digits for the built-in cnn, whose input (8, 8, 8) gets the local SML."""
    digits = load_builtin("digits")
    train = Dataset(features=digits.features[:120], labels=digits.labels[:120],
                    num_classes=digits.num_classes, image_shape=digits.image_shape)
    encrypted, msk = encrypt_training_set(train)
    return train, encrypted, msk


def _request(account=MINER, anchor=ANCHOR):
    return KeyRequest.sign(chain_id=CHAIN_ID, task_id=TASK_ID, anchor_hash=anchor, private_key=account.key)


def _check(bundle, encrypted, miner=MINER, input_shape=None):
    address = to_canonical_address(miner.address)
    shape = input_shape or _flat(encrypted.d)
    return check_bundle(bundle, chain_id=CHAIN_ID, task_id=TASK_ID, anchor_hash=ANCHOR, miner=address,
                        poster=_Task.poster, encrypted=encrypted,
                        sml=model_sml(ANCHOR, address, shape, encrypted.d))


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


@pytest.mark.parametrize("task", ["iris", "digits_images"])
def test_miner_with_its_keys_trains_on_exactly_its_sml_outputs(task, request):
    train, encrypted, msk = request.getfixturevalue(task)
    miner = to_canonical_address(MINER.address)
    spec = build_spec("logreg" if task == "iris" else "cnn", train.d, train.num_classes, train.image_shape)
    bundle = bundle_for(msk, _request(), spec.input_shape, private_key=POSTER.key)
    keys = _check(KeyBundle.decode(bundle.encode()), encrypted, input_shape=spec.input_shape)
    sml = model_sml(ANCHOR, miner, spec.input_shape, train.d)
    assert isinstance(sml, LocalSML) == (task == "digits_images")
    assert len(bundle.encode()) < 32 * sml.out_dim + 512  # one scalar per row, no rows
    indexed, decrypted = decrypted_training_set(encrypted, keys, sml)
    assert np.array_equal(decrypted.apply_int(indexed.features), sml.apply_int(train.features))
    assert np.array_equal(decrypted.apply_int(indexed.features[7:20]), sml.apply_int(train.features[7:20]))


def test_a_bundle_for_another_models_sml_is_refused(digits_images):
    """The data node's keys must be for the SML of the task's model: keys for the dense SML
    are no use to a cnn's miner, and the reverse."""
    train, encrypted, msk = digits_images
    cnn = build_spec("cnn", train.d, train.num_classes, train.image_shape).input_shape
    for keys_for, miner_has in ((_flat(train.d), cnn), (cnn, _flat(train.d))):
        bundle = bundle_for(msk, _request(), keys_for, private_key=POSTER.key)
        with pytest.raises(MessageError, match="not this miner's SML"):
            _check(bundle, encrypted, input_shape=miner_has)


def test_without_keys_for_the_anchor_nothing_decrypts(iris):
    train, encrypted, msk = iris
    miner = to_canonical_address(MINER.address)
    _, foreign = setup(train.d)  # keys of another master key (another task)
    table = table_for(encrypted.ciphertexts().group, train.d)
    with pytest.raises(IPFEDecryptError, match="another master public key"):
        decrypt_projections(encrypted.ciphertexts(), sml_keys(foreign, ANCHOR, miner), table)
    # The poster signs the scalars of another anchor's rows: the rows are the miner's own
    # (derived, never sent), the scalars do not fit them, and nothing decrypts.
    other_anchor = sml_keys(msk, keccak(b"another anchor"), miner)
    bundle = KeyBundle.sign(chain_id=CHAIN_ID, task_id=TASK_ID, anchor_hash=ANCHOR, miner=miner,
                            input_shape=_flat(train.d), keys=other_anchor, private_key=POSTER.key)
    keys = _check(bundle, encrypted)
    with pytest.raises(EncryptedTaskError, match="cannot decrypt"):
        decrypted_training_set(encrypted, keys, sml_for(ANCHOR, miner, train.d))


def test_another_miners_keys_give_its_projections_and_fail_our_sml(iris):
    train, encrypted, msk = iris
    mine, theirs = (to_canonical_address(a.address) for a in (MINER, OTHER))
    their_bundle = bundle_for(msk, _request(OTHER), _flat(train.d), private_key=POSTER.key)
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
    forged = bundle_for(msk, _request(), _flat(encrypted.d), private_key=OTHER.key)
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


def test_malformed_bundles_are_refused_before_anything_is_derived(iris):
    train, encrypted, msk = iris
    good = bundle_for(msk, _request(), _flat(train.d), private_key=POSTER.key)
    assert KeyBundle.decode(bundle_bytes(good)) == good
    order = get_group().order.to_bytes(32, "big")
    for changes, reason in (
        ({"scalars": good.scalars[:-32]}, "must carry 8 scalars"),
        ({"scalars": good.scalars + bytes(32)}, "must carry 8 scalars"),
        ({"scalars": order + good.scalars[32:]}, "below the group order"),
        ({"input_shape": (1, 2, 2)}, "input_shape"),  # E = 1: no SML gives it
        ({"input_shape": (9,)}, "input_shape"),
        ({"input_shape": ()}, "input_shape"),
        ({"features": 0}, "features"),
        ({"features": 5000}, "features"),
        ({"version": 1}, "unsupported KeyBundle version 1"),  # format 1 carried the rows
    ):
        with pytest.raises(MessageError, match=reason):
            KeyBundle.decode(bundle_bytes(good, **changes))
    with pytest.raises(MessageError, match="must carry 16 scalars"):  # keys for 8 rows of 16
        KeyBundle.sign(chain_id=CHAIN_ID, task_id=TASK_ID, anchor_hash=ANCHOR, miner=good.miner,
                       input_shape=(4, 2, 2), keys=good.functional_keys(), private_key=POSTER.key)


def test_a_tampered_bundle_fails_the_posters_signature(iris):
    train, encrypted, msk = iris
    good = bundle_for(msk, _request(), _flat(train.d), private_key=POSTER.key)
    tampered = KeyBundle.decode(bundle_bytes(good, scalars=good.scalars[32:] + good.scalars[:32]))
    with pytest.raises(MessageError, match="signed by"):
        tampered.verify(CHAIN_ID)
    book = KeyBook()
    with pytest.raises(MessageError):
        book.add_bundle(tampered, _Task(), CHAIN_ID)
    assert book.bundle(TASK_ID, ANCHOR, good.miner) is None


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
