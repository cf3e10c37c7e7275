import pytest
from eth.constants import ZERO_HASH32
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes

from pole_chain.chain.block_production import build_block, next_timestamp, produce_pole_block
from pole_chain.demo.demo import block_kind, describe_block, short_address
from vm_hooks.seal import (
    DEV_SCORE,
    IDLE_SCORE,
    BlockKind,
    Seal,
    SealedHeader,
    header_fields,
    pole_score,
    read_block_seal,
    read_seal,
)
from vm_hooks.params import MAX_TASK_TIME_LIMIT, POLE_SCORE_UNIT
from vm_hooks.seal_errors import SealFormatError

from .conftest import address_of, miner_key, new_chain

MINER_KEY = miner_key(b"seal")
MINER = address_of(MINER_KEY)


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
    with pytest.raises(SealFormatError, match=message):
        Seal.decode(extra_data)


def test_header_fields_place_each_part_of_a_pole_seal():
    commitment = keccak(b"model")
    seal = Seal.pole(9_100, 8_900, keccak(b"release"))
    fields = header_fields(seal, miner=MINER, task_id=7, commitment=commitment)
    assert fields == {
        "coinbase": MINER,
        "difficulty": 8_900 * POLE_SCORE_UNIT,
        "nonce": (7).to_bytes(8, "big"),
        "mix_hash": commitment,
        "extra_data": seal.encode(),
        "parent_beacon_block_root": ZERO_HASH32,  # unsigned: signed once the rest is final
        "requests_hash": ZERO_HASH32,
    }


@pytest.mark.parametrize("seal, score", [(Seal.idle(5), IDLE_SCORE), (Seal.dev(), DEV_SCORE)])
def test_idle_and_dev_seals_have_their_fixed_score_and_no_task(seal, score):
    fields = header_fields(seal, miner=MINER)
    assert fields["difficulty"] == score
    assert fields["nonce"] == bytes(8) and fields["mix_hash"] == ZERO_HASH32
    with pytest.raises(ValueError):
        header_fields(seal, miner=MINER, task_id=1)


def test_read_seal_inverts_header_fields_on_a_real_header(task_chain):
    commitment = keccak(b"model")
    block = produce_pole_block(
        task_chain.chain, [], signer=MINER_KEY, task_id=1, model_commitment=commitment,
        train_bps=9_500, test_bps=9_000, release_digest=keccak(b"release"),
    ).block
    assert read_seal(block.header) == SealedHeader(
        Seal.pole(9_500, 9_000, keccak(b"release")), MINER, pole_score(9_000), task_id=1,
        commitment=commitment,
        signature=block.header.parent_beacon_block_root + block.header.requests_hash,
    )


@pytest.mark.parametrize(
    "seal, field, value, rule",
    [
        (Seal.idle(2), "mix_hash", b"\x01" * 32, "idle block mix_hash must be zero"),
        (Seal.dev(), "mix_hash", b"\x01" * 32, "dev block mix_hash must be zero"),
        (Seal.dev(), "nonce", b"\x00" * 7 + b"\x01", "dev block nonce must be zero"),
        (Seal.idle(2), "parent_beacon_block_root", b"\x01" * 32, "idle block parent_beacon"),
        (Seal.idle(2), "requests_hash", b"\x01" * 32, "idle block parent_beacon"),
        (Seal.dev(), "parent_beacon_block_root", b"\x01" * 32, "dev block parent_beacon"),
        (Seal.dev(), "requests_hash", b"\x01" * 32, "dev block parent_beacon"),
    ],
)
def test_fields_a_kind_does_not_use_must_be_zero(seal, field, value, rule):
    chain = new_chain(dev=True)
    block = build_block(chain, [], header_fields(seal, miner=MINER), next_timestamp(chain, None)).block
    with pytest.raises(SealFormatError, match=rule):
        read_seal(block.header.copy(**{field: value}))


def web3_block(header, number=2):
    """The fields of ``header`` the way web3 returns them from eth_getBlockByNumber."""
    return {
        "number": number, "hash": HexBytes(header.hash), "extraData": HexBytes(header.extra_data),
        "nonce": HexBytes(header.nonce), "mixHash": HexBytes(header.mix_hash),
        "difficulty": header.difficulty, "miner": to_checksum_address(header.coinbase),
        "parentBeaconBlockRoot": HexBytes(header.parent_beacon_block_root),
        "requestsHash": HexBytes(header.requests_hash), "transactions": [],
    }


def test_web3_blocks_read_through_the_same_mapping(task_chain):
    block = produce_pole_block(
        task_chain.chain, [], signer=MINER_KEY, task_id=1, model_commitment=keccak(b"model"),
        train_bps=9_525, test_bps=9_050, release_digest=keccak(b"release"),
    ).block
    assert read_block_seal(web3_block(block.header)) == read_seal(block.header)
    assert block_kind(web3_block(block.header)) == "PoLe"
    assert f"task 1, miner {short_address(MINER)}, train 95.25 %, test 90.50 %  0 tx" in describe_block(
        web3_block(block.header)
    )
    idle_header = task_chain.blocks[0].header
    assert block_kind(web3_block(idle_header, number=1)) == "idle"
    assert "work       2" in describe_block(web3_block(idle_header, number=1))


def test_a_pole_score_is_the_test_accuracy_in_score_units():
    """One basis point of test accuracy outweighs every idle block of a task's span: a
    span lasts at most MAX_TASK_TIME_LIMIT s plus the 15 s clock allowance, and idle
    blocks have strictly increasing timestamps."""
    assert POLE_SCORE_UNIT == 2**20
    assert pole_score(1) == POLE_SCORE_UNIT > (MAX_TASK_TIME_LIMIT + 15) * IDLE_SCORE
    fields = header_fields(Seal.pole(9_000, 8_999, keccak(b"release")), miner=MINER, task_id=1)
    assert fields["difficulty"] == 8_999 * 2**20
