"""vm_hooks/seal.py: `Seal.decode` refuses every extra_data that is not a canonical seal with
SealError only, every valid seal survives encode -> decode, and `seal_signer` reads any
64 signature bytes as a signer or a SealError."""
from __future__ import annotations

from eth_keys import keys
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.chain.conftest import new_chain
from tests.properties.mutations import BOUNDARY_BYTES, mutated, refusal_kind
from vm_hooks.seal import (
    EXTRA_DATA_SIZE,
    MAGIC,
    MAX_BPS,
    RELEASE_DIGEST_PREFIX_SIZE,
    VERSION,
    BlockKind,
    Seal,
    SealError,
    seal_signer,
    sign_header,
)

bps = st.integers(0, MAX_BPS)
seals = st.one_of(
    st.builds(Seal.pole, bps, bps, st.binary(min_size=32, max_size=32)),
    st.builds(Seal.idle, st.integers(0, 2**64 - 1)),
    st.just(Seal.dev()),
)


def decode_or_refuse(extra_data: bytes) -> Seal | None:
    """Seal.decode; a refusal must be a SealError, an accepted seal must be canonical."""
    try:
        seal = Seal.decode(extra_data)
    except SealError as error:
        event(f"refused: {refusal_kind(error)}")
        return None
    event(f"decoded a {seal.kind.name} seal")
    assert seal.encode() == extra_data
    return seal


@settings(max_examples=300)
@given(st.binary(max_size=2 * EXTRA_DATA_SIZE))
def test_arbitrary_extra_data_raises_only_seal_error(extra_data):
    decode_or_refuse(extra_data)


# A valid head (magic, version, a kind byte that may be unknown), then arbitrary bytes: gets
# past the first checks to the per-kind range and padding rules.
headed = st.builds(
    lambda kind, body: MAGIC + bytes([VERSION, kind]) + body,
    st.one_of(st.sampled_from(list(BlockKind)), st.sampled_from(BOUNDARY_BYTES)),
    st.one_of(
        st.binary(min_size=EXTRA_DATA_SIZE - 4, max_size=EXTRA_DATA_SIZE - 4),
        st.binary(min_size=8, max_size=8).map(lambda b: b.ljust(EXTRA_DATA_SIZE - 4, b"\0")),
    ),
)


@settings(max_examples=400)
@given(headed)
def test_any_32_bytes_with_a_seal_head_raise_only_seal_error(extra_data):
    decode_or_refuse(extra_data)


@settings(max_examples=300)
@given(mutated(seals.map(Seal.encode)))
def test_mutants_of_valid_seals_raise_only_seal_error(extra_data):
    decode_or_refuse(extra_data)


@settings(max_examples=200)
@given(seals)
def test_valid_seals_round_trip(seal):
    encoded = seal.encode()
    assert len(encoded) == EXTRA_DATA_SIZE
    assert Seal.decode(encoded) == seal
    if seal.kind is BlockKind.POLE:
        assert len(seal.release_digest_prefix) == RELEASE_DIGEST_PREFIX_SIZE


# -- the coinbase's signature in parent_beacon_block_root || requests_hash -------------------

KEY = keys.PrivateKey(bytes(range(1, 33)))
HEADER = new_chain().get_canonical_head().copy(coinbase=KEY.public_key.to_canonical_address())
SIGNED = sign_header(HEADER, KEY)


@settings(max_examples=200)
@given(st.binary(min_size=64, max_size=64))
def test_any_signature_fields_raise_only_seal_error(compact):
    header = HEADER.copy(parent_beacon_block_root=compact[:32], requests_hash=compact[32:])
    try:
        signer = seal_signer(header)
    except SealError as error:
        event(f"refused: {refusal_kind(error)}")
    else:
        event("recovered a signer")
        assert len(signer) == 20


@settings(max_examples=100)
@given(st.integers(0, 511), st.binary(min_size=32, max_size=32))
def test_a_signature_binds_the_header(bit, state_root):
    """One flipped signature bit, or any change to the header, and the signer is no longer
    the coinbase (or the signature is refused outright)."""
    compact = bytearray(SIGNED.parent_beacon_block_root + SIGNED.requests_hash)
    compact[bit // 8] ^= 1 << (bit % 8)
    flipped = SIGNED.copy(parent_beacon_block_root=bytes(compact[:32]), requests_hash=bytes(compact[32:]))
    assert seal_signer(SIGNED) == SIGNED.coinbase
    for tampered in (flipped, SIGNED.copy(state_root=state_root)):
        if tampered == SIGNED:
            continue
        try:
            assert seal_signer(tampered) != SIGNED.coinbase
        except SealError:
            pass
