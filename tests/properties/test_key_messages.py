"""miner/encrypted_tasks.py's KeyRequest and KeyBundle: whatever bytes a client or a peer sends,
decoding gives a canonical, well-formed message or MessageError, and an accepted bundle's
keys derive (its rows are an SML's, one scalar per row) without any other error."""
from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from miner.encrypted_tasks import KEY_BUNDLE_TYPE, KEY_REQUEST_TYPE, KeyBundle, KeyRequest
from miner.ipfe import FunctionalKeys, get_group, sml_rows
from miner.messages import MessageError
from tests.properties.mutations import mutated, refusal_kind, rlp_mutated, rlp_scrambled

POSTER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
MINER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
MINER = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
ANCHOR = b"\x0b" * 32


def _bundle(features: int, input_shape: tuple[int, ...]) -> bytes:
    rows = sml_rows(ANCHOR, MINER, features, input_shape)
    keys = FunctionalKeys(get_group(), b"\x0d" * 32, rows, tuple(range(1, rows.shape[0] + 1)))
    return KeyBundle.sign(chain_id=1337, task_id=3, anchor_hash=ANCHOR, miner=MINER,
                          input_shape=input_shape, keys=keys, private_key=POSTER_KEY).encode()


# A dense SML (4 features), local SMLs of 2 and 8 maps over 2x2 images, and a request.
VALID = {
    KeyBundle: [_bundle(4, (8,)), _bundle(4, (2, 2, 2)), _bundle(4, (8, 2, 2))],
    KeyRequest: [KeyRequest.sign(chain_id=1337, task_id=3, anchor_hash=ANCHOR,
                                 private_key=MINER_KEY).encode()],
}
encodings = st.sampled_from([data for valid in VALID.values() for data in valid])


def decode_or_refuse(data: bytes) -> None:
    cls = KeyBundle if data[:1] == bytes([KEY_BUNDLE_TYPE]) else KeyRequest
    try:
        message = cls.decode(data)
    except MessageError as error:
        event(f"refused: {refusal_kind(error)}")
        return
    event(f"decoded {cls.NAME}")
    assert message.encode() == data
    try:
        message.verify()
    except MessageError:
        pass
    if isinstance(message, KeyBundle):
        keys = message.functional_keys()  # accepted: its keys derive, no other error
        assert keys.k * 32 == len(message.scalars) and keys.n == message.features


@settings(max_examples=300)
@given(st.sampled_from((KEY_REQUEST_TYPE, KEY_BUNDLE_TYPE)), st.binary(max_size=400))
def test_a_key_type_byte_with_arbitrary_body_is_refused_or_canonical(type_byte, body):
    decode_or_refuse(bytes([type_byte]) + body)


@settings(max_examples=300)
@given(mutated(encodings))
def test_byte_mutants_of_valid_key_messages(data):
    decode_or_refuse(data)


@settings(max_examples=300)
@given(st.one_of(rlp_mutated(encodings, prefix_size=1), rlp_scrambled(encodings, prefix_size=1)))
def test_structural_mutants_of_valid_key_messages(data):
    decode_or_refuse(data)
