"""miner/messages.py: decode and verify refuse anything but canonical, signed messages,
with MessageError only, and every valid message survives encode -> decode unchanged."""
from __future__ import annotations

import pytest
import rlp
from hypothesis import event, given, settings
from hypothesis import strategies as st

from miner.messages import (
    ANNOUNCEMENT_TYPE,
    MAX_ADMITTED,
    MAX_BPS,
    MAX_MESSAGE_SIZE,
    MAX_UINT64,
    RELEASE_TYPE,
    MessageError,
    Release,
    SolutionAnnouncement,
    decode,
)
from tests.properties.mutations import mutated, refusal_kind, rlp_mutated, rlp_scrambled

# Dev accounts of the test mnemonic: the miner and the poster.
KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
)

hash32 = st.binary(min_size=32, max_size=32)
ids = st.integers(1, MAX_UINT64)

announcements = st.builds(
    SolutionAnnouncement.sign,
    chain_id=ids,
    task_id=ids,
    anchor_hash=hash32,
    model_commitment=hash32,
    train_bps=st.integers(0, MAX_BPS),
    private_key=st.sampled_from(KEYS),
)
releases = st.builds(
    Release.sign,
    chain_id=ids,
    task_id=ids,
    anchor_hash=hash32,
    test_set_digest=hash32,
    admitted=st.lists(hash32, max_size=MAX_ADMITTED),
    private_key=st.sampled_from(KEYS),
)
messages = st.one_of(announcements, releases)

# Signing costs a millisecond, so the mutation tests start from a fixed set of valid
# encodings: both types, boundary values, empty and full admitted lists.
VALID = [
    SolutionAnnouncement.sign(
        chain_id=chain_id, task_id=task_id, anchor_hash=bytes([task_id % 256]) * 32,
        model_commitment=b"\x0a" * 32, train_bps=train_bps, private_key=KEYS[0],
    ).encode()
    for chain_id, task_id, train_bps in ((1, 1, 0), (0x504F4C45, 7, 9250), (MAX_UINT64, MAX_UINT64, MAX_BPS))
] + [
    Release.sign(
        chain_id=0x504F4C45, task_id=task_id, anchor_hash=b"\x01" * 32,
        test_set_digest=b"\x02" * 32, admitted=[bytes([i]) * 32 for i in range(count)],
        private_key=KEYS[1],
    ).encode()
    for task_id, count in ((1, 0), (7, 2), (2**40, MAX_ADMITTED))
]
encodings = st.sampled_from(VALID)


def decode_or_refuse(data: bytes):
    """decode() then verify(); returns the message, or None when refused with MessageError."""
    try:
        message = decode(data)
    except MessageError as error:
        event(f"refused: {refusal_kind(error)}")
        return None
    event("decoded")
    # Accepted bytes are canonical: exactly the encoding of what they decode to.
    assert message.encode() == data
    try:
        message.verify()
    except MessageError:
        pass
    return message


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_with_message_error(data):
    decode_or_refuse(data)


@settings(max_examples=200)
@given(st.sampled_from((ANNOUNCEMENT_TYPE, RELEASE_TYPE)), st.binary(max_size=300))
def test_known_type_byte_with_arbitrary_body(type_byte, body):
    decode_or_refuse(bytes([type_byte]) + body)


@settings(max_examples=400)
@given(mutated(encodings))
def test_byte_mutants_of_valid_messages(data):
    decode_or_refuse(data)


@settings(max_examples=400)
@given(st.one_of(rlp_mutated(encodings, prefix_size=1), rlp_scrambled(encodings, prefix_size=1)))
def test_structural_mutants_of_valid_messages(data):
    decode_or_refuse(data)


@settings(max_examples=50)
@given(st.integers(MAX_MESSAGE_SIZE + 1, 4 * MAX_MESSAGE_SIZE))
def test_oversized_messages_are_refused_before_parsing(size):
    padded = bytes([RELEASE_TYPE]) + b"\xc0" * (size - 1)
    assert decode_or_refuse(padded) is None


@settings(max_examples=60)
@given(messages)
def test_signed_messages_round_trip_and_verify(message):
    data = message.encode()
    decoded = type(message).decode(data)
    assert decoded == message and decoded.digest == message.digest
    assert decoded.verify(message.chain_id) is decoded
    other = Release if isinstance(message, SolutionAnnouncement) else SolutionAnnouncement
    with pytest.raises(MessageError, match=f"expected a {other.NAME}"):
        other.decode(data)


def test_an_empty_list_for_an_integer_is_not_a_second_encoding():
    """Found by the structural mutants: rlp reads [] as the integer 0, so train_bps = 0
    could be spelt two ways and the same announcement would have two digests."""
    canonical = SolutionAnnouncement.decode(VALID[0])
    assert canonical.train_bps == 0
    fields = rlp.decode(VALID[0][1:])
    fields[5] = []
    respelt = bytes([ANNOUNCEMENT_TYPE]) + rlp.encode(fields)
    with pytest.raises(MessageError, match="non-canonical"):
        decode(respelt)
