"""Signed protocol messages: canonical round trips and every way decode/verify must refuse."""

from __future__ import annotations

import pytest
import rlp
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.backends import CoinCurveECCBackend, get_backend
from eth_utils import keccak, to_canonical_address

from miner.messages import (
    ANNOUNCEMENT_TYPE,
    MAX_ADMITTED,
    MAX_MESSAGE_SIZE,
    RELEASE_TYPE,
    SECP256K1_N,
    SIGNING_TAG,
    BadSignature,
    MessageError,
    Release,
    SolutionAnnouncement,
    commitment_for,
    decode,
)

CHAIN_ID = 0x504F4C45
# The first two accounts of the test mnemonic (same as anvil/Hardhat).
MINER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
POSTER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
MINER = to_canonical_address("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
POSTER = to_canonical_address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
PARENT = bytes(range(32))
COMMITMENT_A = b"\x0a" * 32
COMMITMENT_B = b"\x0b" * 32


def announcement(**overrides: object) -> SolutionAnnouncement:
    fields: dict = dict(
        chain_id=CHAIN_ID,
        task_id=7,
        anchor_hash=PARENT,
        model_commitment=COMMITMENT_A,
        train_bps=9_250,
        private_key=MINER_KEY,
    )
    fields.update(overrides)
    return SolutionAnnouncement.sign(**fields)


def release(**overrides: object) -> Release:
    fields: dict = dict(
        chain_id=CHAIN_ID,
        task_id=7,
        anchor_hash=PARENT,
        test_set_digest=keccak(b"test set"),
        admitted=[COMMITMENT_B, COMMITMENT_A],
        private_key=POSTER_KEY,
    )
    fields.update(overrides)
    return Release.sign(**fields)


def raw_fields(encoding: bytes) -> list:
    """The RLP list of a message encoding, to build malformed variants from."""
    return rlp.decode(encoding[1:])


def re_sign(type_byte: int, fields: list, key: str) -> bytes:
    """Encode raw fields with a valid signature over exactly them (the message's own hashing),
    so a rejection can only come from the rule under test, not from the signature."""
    unsigned = bytes([type_byte]) + rlp.encode(fields[:-1])
    chain_id = int.from_bytes(fields[1], "big")
    signing_hash = keccak(SIGNING_TAG + bytes([type_byte]) + chain_id.to_bytes(8, "big") + unsigned)
    signature = Account.sign_message(encode_defunct(primitive=signing_hash), key).signature
    return bytes([type_byte]) + rlp.encode(fields[:-1] + [bytes(signature)])


# -- round trips -----------------------------------------------------------------------


def test_announcement_round_trip() -> None:
    message = announcement()
    encoding = message.encode()
    decoded = decode(encoding)
    assert decoded == message
    assert isinstance(decoded, SolutionAnnouncement)
    assert decoded.encode() == encoding
    assert decoded.digest == message.digest == keccak(encoding)
    assert decoded.miner == decoded.signer == MINER
    assert decoded.verify(CHAIN_ID) is decoded
    assert SolutionAnnouncement.decode(encoding) == message


def test_release_round_trip_sorts_and_deduplicates() -> None:
    message = release(admitted=[COMMITMENT_B, COMMITMENT_A, COMMITMENT_B])
    assert message.admitted == (COMMITMENT_A, COMMITMENT_B)
    decoded = Release.decode(message.encode())
    assert decoded == message
    assert decoded.poster == POSTER
    decoded.verify(CHAIN_ID)
    assert decoded.admits(COMMITMENT_A) and decoded.admits(COMMITMENT_B)
    assert not decoded.admits(b"\x0c" * 32)


def test_release_with_maximum_admitted_fits_the_size_limit() -> None:
    admitted = [keccak(i.to_bytes(2, "big")) for i in range(MAX_ADMITTED)]
    message = release(admitted=admitted)
    assert len(message.encode()) <= MAX_MESSAGE_SIZE
    assert Release.decode(message.encode()).verify() == message


def test_typed_decode_refuses_the_other_type() -> None:
    with pytest.raises(MessageError, match="expected a Release"):
        Release.decode(announcement().encode())
    with pytest.raises(MessageError, match="expected a SolutionAnnouncement"):
        SolutionAnnouncement.decode(release().encode())


def test_messages_are_immutable_values() -> None:
    message = announcement()
    with pytest.raises(AttributeError):
        message.train_bps = 10_000  # type: ignore[misc]
    assert len({message, decode(message.encode()), release()}) == 2
    assert message != release()


def test_commitment_binds_model_coinbase_and_anchor() -> None:
    model = b"model bytes"
    assert commitment_for(model, MINER, PARENT) == keccak(model + MINER + PARENT)
    assert commitment_for(model, POSTER, PARENT) != commitment_for(model, MINER, PARENT)
    with pytest.raises(MessageError, match="coinbase"):
        commitment_for(model, MINER[:19], PARENT)
    with pytest.raises(MessageError, match="anchor_hash"):
        commitment_for(model, MINER, PARENT + b"\x00")


def test_recovery_uses_coincurve() -> None:
    assert isinstance(get_backend(), CoinCurveECCBackend)


# -- digest stability: the canonical encoding must never change silently -----------------

# Fixed messages signed with fixed keys (RFC 6979 signatures are deterministic). If one of
# these changes, every node's digests change: that needs a new MESSAGE_VERSION, not an edit.
ANNOUNCEMENT_ENCODING = (
    "01f8a40184504f4c4507a0000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c"
    "1d1e1fa00a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a82242294"
    "f39fd6e51aad88f6f4ce6ab8827279cfffb92266b841d00062107c0fb9961ac01d7cd31477feb392"
    "399fd58864049cef5db4844037b17895dd21e3f5b779546294d530ea587088f7b6bf88a24f26bea6"
    "d2112d6f9e461c"
)
ANNOUNCEMENT_DIGEST = "ddc2ca4fe6b39247caa46c831c545074acc94cfe1c5efaba16f9c00dfc1846dd"
RELEASE_ENCODING = (
    "02f8e50184504f4c4507a0000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c"
    "1d1e1fa00d830e1264449ae827460d3c63f86f50d9088b77951f647260c36ea6e18b0e07f842a00a"
    "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0aa00b0b0b0b0b0b0b0b"
    "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b9470997970c51812dc3a010c7d01b50e"
    "0d17dc79c8b841140c6cd54259c7962ae887d2e93585eea64d8280fb07a0bb12456b46b37ea3e070"
    "cadddb4e4e22cd52acacd7d0bb0775485ac5130f7675f5de27f49ba279972e1c"
)
RELEASE_DIGEST = "6f906f446046756f2c284827299fc44f58db5e250d584488655f7a98bffa02b5"


def test_announcement_encoding_and_digest_are_stable() -> None:
    message = announcement()
    assert message.encode().hex() == ANNOUNCEMENT_ENCODING
    assert message.digest.hex() == ANNOUNCEMENT_DIGEST
    assert decode(bytes.fromhex(ANNOUNCEMENT_ENCODING)).verify(CHAIN_ID) == message


def test_release_encoding_and_digest_are_stable() -> None:
    message = release()
    assert message.encode().hex() == RELEASE_ENCODING
    assert message.digest.hex() == RELEASE_DIGEST
    assert decode(bytes.fromhex(RELEASE_ENCODING)).verify(CHAIN_ID) == message


# -- structural rejections (decode) ------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x03", b"\xc0", b"\xf8"])
def test_rejects_empty_and_unknown_types(data: bytes) -> None:
    with pytest.raises(MessageError, match="empty|unknown message type"):
        decode(data)


def test_rejects_non_bytes() -> None:
    with pytest.raises(MessageError, match="must be bytes"):
        decode(announcement().encode().hex())  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [announcement, release])
def test_rejects_every_truncation(make) -> None:
    encoding = make().encode()
    for length in range(1, len(encoding)):
        # past the type byte and the RLP list prefix (at most 3 bytes here), a cut body is
        # called truncated, not pyrlp's "-N superfluous bytes"
        with pytest.raises(MessageError, match="truncated" if length >= 5 else None):
            decode(encoding[:length])


@pytest.mark.parametrize("make", [announcement, release])
def test_rejects_trailing_bytes(make) -> None:
    with pytest.raises(MessageError, match="superfluous"):
        decode(make().encode() + b"\x00")


def test_rejects_oversized_before_parsing() -> None:
    data = bytes([RELEASE_TYPE]) + b"\x00" * MAX_MESSAGE_SIZE
    with pytest.raises(MessageError, match=f"{MAX_MESSAGE_SIZE + 1} bytes, limit"):
        decode(data)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_rejects_unsupported_version(version: int) -> None:
    fields = raw_fields(announcement().encode())
    fields[0] = rlp.sedes.big_endian_int.serialize(version)
    with pytest.raises(MessageError, match=f"unsupported SolutionAnnouncement version {version}"):
        decode(re_sign(ANNOUNCEMENT_TYPE, fields, MINER_KEY))


def test_rejects_newer_version_with_a_different_layout() -> None:
    fields = raw_fields(release().encode()) + [b"future field"]
    fields[0] = b"\x02"
    with pytest.raises(MessageError, match="unsupported Release version 2"):
        decode(bytes([RELEASE_TYPE]) + rlp.encode(fields))


def test_rejects_wrong_field_count() -> None:
    fields = raw_fields(announcement().encode())
    with pytest.raises(MessageError, match="malformed SolutionAnnouncement"):
        decode(bytes([ANNOUNCEMENT_TYPE]) + rlp.encode(fields[:-1]))
    with pytest.raises(MessageError, match="malformed SolutionAnnouncement"):
        decode(bytes([ANNOUNCEMENT_TYPE]) + rlp.encode(fields + [b""]))


def test_rejects_body_that_is_not_a_list() -> None:
    with pytest.raises(MessageError, match="not a non-empty RLP list"):
        decode(bytes([ANNOUNCEMENT_TYPE]) + rlp.encode(b"hello"))
    with pytest.raises(MessageError, match="not a non-empty RLP list"):
        decode(bytes([ANNOUNCEMENT_TYPE]) + rlp.encode([]))


@pytest.mark.parametrize(
    "index, value, reason",
    [
        (3, PARENT[:31], "malformed"),  # anchor_hash 31 bytes
        (4, COMMITMENT_A + b"\x00", "malformed"),  # model_commitment 33 bytes
        (6, MINER[:19], "malformed"),  # miner 19 bytes
        (5, b"\x00\x01", "malformed"),  # train_bps with a leading zero (non-minimal)
        (5, (10_001).to_bytes(2, "big"), "train_bps"),
        (2, b"", "task_id"),  # task id 0 means "no task" in the registry
        (2, (2**64).to_bytes(9, "big"), "task_id"),  # does not fit the header nonce
        (1, b"", "chain_id"),
    ],
)
def test_rejects_bad_announcement_fields(index: int, value: bytes, reason: str) -> None:
    fields = raw_fields(announcement().encode())
    fields[index] = value
    with pytest.raises(MessageError, match=reason):
        decode(bytes([ANNOUNCEMENT_TYPE]) + rlp.encode(fields))


def test_rejects_non_canonical_rlp_length_prefix() -> None:
    # train_bps 5 written as the one-byte string 0x81 0x05 instead of the byte 0x05 itself.
    items = [rlp.encode(item) for item in raw_fields(announcement(train_bps=5).encode())]
    assert items[5] == b"\x05"
    items[5] = b"\x81\x05"
    payload = b"".join(items)
    body = rlp.codec.length_prefix(len(payload), 0xC0) + payload
    with pytest.raises(MessageError, match="malformed"):
        decode(bytes([ANNOUNCEMENT_TYPE]) + body)


def test_rejects_unsorted_admitted_even_when_properly_signed() -> None:
    fields = raw_fields(release().encode())
    fields[5] = list(reversed(fields[5]))
    with pytest.raises(MessageError, match="strictly ascending"):
        decode(re_sign(RELEASE_TYPE, fields, POSTER_KEY))


def test_rejects_duplicate_admitted() -> None:
    fields = raw_fields(release().encode())
    fields[5] = [COMMITMENT_A, COMMITMENT_A]
    with pytest.raises(MessageError, match="strictly ascending"):
        decode(re_sign(RELEASE_TYPE, fields, POSTER_KEY))


def test_rejects_too_many_admitted() -> None:
    fields = raw_fields(release().encode())
    fields[5] = [i.to_bytes(32, "big") for i in range(MAX_ADMITTED + 1)]
    with pytest.raises(MessageError, match="malformed Release"):
        decode(re_sign(RELEASE_TYPE, fields, POSTER_KEY))


def test_rejects_malleated_high_s_signature() -> None:
    fields = raw_fields(announcement().encode())
    signature = fields[-1]
    s = int.from_bytes(signature[32:64], "big")
    flipped_v = 55 - signature[64]  # 27 <-> 28
    fields[-1] = signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([flipped_v])
    with pytest.raises(MessageError, match="low s"):
        decode(bytes([ANNOUNCEMENT_TYPE]) + rlp.encode(fields))


@pytest.mark.parametrize("v", [0, 1, 29, 37])
def test_rejects_non_canonical_v(v: int) -> None:
    fields = raw_fields(announcement().encode())
    fields[-1] = fields[-1][:64] + bytes([v])
    with pytest.raises(MessageError, match="signature v"):
        decode(bytes([ANNOUNCEMENT_TYPE]) + rlp.encode(fields))


def test_sign_rejects_bad_fields() -> None:
    with pytest.raises(MessageError, match="train_bps"):
        announcement(train_bps=10_001)
    with pytest.raises(MessageError, match="anchor_hash"):
        announcement(anchor_hash=PARENT[:31])
    with pytest.raises(MessageError, match="admitted has 65 entries"):
        release(admitted=[i.to_bytes(32, "big") for i in range(MAX_ADMITTED + 1)])
    with pytest.raises(MessageError, match="admitted commitment"):
        release(admitted=[b"short"])


# -- signature rejections (verify) ----------------------------------------------------------


def test_forged_signature_claiming_another_miner() -> None:
    """The poster's key signs an announcement that names the miner: recovery exposes it."""
    honest = announcement()
    fields = raw_fields(honest.encode())
    forged = SolutionAnnouncement.decode(re_sign(ANNOUNCEMENT_TYPE, fields, POSTER_KEY))
    assert forged.miner == MINER
    with pytest.raises(BadSignature, match=f"signed by 0x{POSTER.hex()}"):
        forged.verify()


def test_signature_moved_to_another_claimed_signer() -> None:
    message = release().copy(poster=MINER)
    with pytest.raises(BadSignature):
        Release.decode(message.encode()).verify()


@pytest.mark.parametrize(
    "change",
    [
        {"train_bps": 10_000},
        {"task_id": 8},
        {"model_commitment": COMMITMENT_B},
        {"anchor_hash": keccak(b"other parent")},
        {"chain_id": 1},  # replay on another chain
    ],
)
def test_tampered_announcement_field_breaks_signature(change: dict) -> None:
    tampered = decode(announcement().copy(**change).encode())
    with pytest.raises(BadSignature):
        tampered.verify()


def test_tampered_admitted_list_breaks_signature() -> None:
    tampered = release().copy(admitted=(COMMITMENT_A, COMMITMENT_B, b"\x0c" * 32))
    with pytest.raises(BadSignature):
        Release.decode(tampered.encode()).verify()


def test_flipped_byte_in_encoding_breaks_signature() -> None:
    encoding = bytearray(announcement().encode())
    encoding[12] ^= 0x01  # inside anchor_hash
    with pytest.raises(BadSignature):
        decode(bytes(encoding)).verify()


def test_verify_checks_chain_id_when_given() -> None:
    message = announcement(chain_id=1)
    message.verify()
    with pytest.raises(MessageError, match=f"chain 1, expected {CHAIN_ID}"):
        message.verify(CHAIN_ID)


def test_signature_is_domain_separated_by_type_and_chain() -> None:
    a = announcement()
    assert a.signing_hash != announcement(chain_id=1).signing_hash
    unsigned = a.unsigned_encoding()
    assert a.signing_hash == keccak(
        SIGNING_TAG + bytes([ANNOUNCEMENT_TYPE]) + CHAIN_ID.to_bytes(8, "big") + unsigned
    )
    assert a.encode().startswith(unsigned[:1])


# -- robustness: untrusted bytes only ever raise MessageError ---------------------------


@pytest.mark.parametrize("body", [[[b""]], [b"\x01", [b""]] + [b""] * 6])
def test_nested_list_where_an_integer_belongs(body: list) -> None:
    for type_byte in (ANNOUNCEMENT_TYPE, RELEASE_TYPE):
        with pytest.raises(MessageError, match="malformed"):
            decode(bytes([type_byte]) + rlp.encode(body))


@pytest.mark.parametrize("make", [announcement, release])
def test_random_mutations_are_rejected_cleanly(make) -> None:
    """Flip, insert or delete one byte anywhere: decode+verify either refuses with a
    MessageError or (when the mutation hit nothing that matters) yields the original."""
    import random

    original = make()
    encoding = original.encode()
    rng = random.Random(1234)
    for _ in range(1500):
        data = bytearray(encoding)
        position = rng.randrange(len(data))
        operation = rng.choice(("flip", "insert", "delete"))
        if operation == "flip":
            data[position] ^= 1 << rng.randrange(8)
        elif operation == "insert":
            data.insert(position, rng.randrange(256))
        else:
            del data[position]
        try:
            decoded = decode(bytes(data)).verify(CHAIN_ID)
        except MessageError:
            continue
        assert decoded == original and bytes(data) == encoding
