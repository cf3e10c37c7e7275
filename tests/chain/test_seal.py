import pytest

from vm_hooks.seal import BlockKind, Seal, SealError


@pytest.mark.parametrize(
    "seal",
    [Seal.pole(9_000, 8_750, bytes(range(32))), Seal.idle(123_456), Seal.dev()],
)
def test_round_trip_is_exactly_32_bytes(seal):
    encoded = seal.encode()
    assert len(encoded) == 32
    assert Seal.decode(encoded) == seal


def test_pole_seal_keeps_the_release_digest_prefix():
    seal = Seal.decode(Seal.pole(1, 2, bytes(range(32))).encode())
    assert seal.kind is BlockKind.POLE
    assert seal.release_digest_prefix == bytes(range(24))


@pytest.mark.parametrize(
    "extra_data, message",
    [
        (b"", "must be 32 bytes"),
        (Seal.dev().encode()[:31], "must be 32 bytes"),
        (b"XX" + Seal.dev().encode()[2:], "magic"),
        (b"PL\x02\x03" + bytes(28), "version"),
        (b"PL\x01\x09" + bytes(28), "unknown block kind"),
        (b"PL\x01\x03" + b"\x01" + bytes(27), "dev seal padding"),
        (b"PL\x01\x02" + bytes(8) + b"\x01" + bytes(19), "idle seal padding"),
        (b"PL\x01\x01" + (10_001).to_bytes(2, "big") + bytes(26), "train_bps 10001"),
        (b"PL\x01\x01" + bytes(2) + (65_535).to_bytes(2, "big") + bytes(24), "test_bps 65535"),
    ],
)
def test_malformed_extra_data_is_refused_with_the_rule_named(extra_data, message):
    with pytest.raises(SealError, match=message):
        Seal.decode(extra_data)
