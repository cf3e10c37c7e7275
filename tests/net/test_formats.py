"""The byte formats and the penalty arithmetic, without a network (the key bundle's format
is miner/encrypted_tasks.py's, but its bound is the topic's limit)."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
import rlp
from eth_utils import keccak, to_canonical_address

from miner.encrypted_tasks import MAX_BUNDLE_KEYS, MAX_ENCRYPTED_FEATURES, MAX_KEY_BUNDLE_SIZE, KeyBundle
from miner.ipfe import FunctionalKeys, get_group, sml_rows
from pole_chain.net import ChainStatus, Envelope, EnvelopeError, Kind
from pole_chain.net import wire
from pole_chain.net.envelope import (
    FRAME_OVERHEAD,
    GOSSIP_FRAME_LIMIT,
    PAYLOAD_LIMITS,
    topic_name,
)
from pole_chain.net.peer_score import Offence, PeerScore
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID


@pytest.mark.parametrize("kind", list(Kind))
def test_envelope_round_trips_for_every_kind(kind):
    envelope = Envelope(kind, b"payload")
    assert Envelope.decode(envelope.encode(), kind) == envelope


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80",
        rlp.encode([b"block", 1]),
        rlp.encode([b"block", 2, b"p"]),  # a version this node does not speak
        rlp.encode([b"block", 1, [b"p"]]),  # a list where the payload goes
        rlp.encode([b"block", b"\x00\x01", b"p"]),  # a non-canonical integer
        rlp.encode([b"block", 1, b"x" * (PAYLOAD_LIMITS[Kind.BLOCK] + 1)]),
    ],
)
def test_malformed_envelopes_are_refused(data):
    with pytest.raises(EnvelopeError):
        Envelope.decode(data, Kind.BLOCK)


def test_topics_differ_by_kind_and_genesis():
    names = {topic_name(kind, genesis) for kind in Kind for genesis in (b"\x01" * 32, b"\x02" * 32)}
    assert len(names) == 2 * len(Kind)


def test_status_and_range_round_trip():
    status = ChainStatus(b"\x01" * 32, b"\x02" * 32, 12, 34_000)
    assert wire.decode_status(wire.encode_status(status)) == status
    request = wire.RangeRequest(5, 10)
    assert wire.decode_range(wire.encode_range(request), 10) == request


def test_item_lists_keep_the_items_bytes_and_trim_to_the_size_limit():
    items = [rlp.encode([b"h" * n, n]) for n in range(1, 60)]
    assert wire.decode_items(wire.encode_items(items, 10**6)) == items
    trimmed = wire.decode_items(wire.encode_items(items, 400))
    assert 0 < len(trimmed) < len(items) and trimmed == items[: len(trimmed)]


def test_error_responses_carry_code_and_reason():
    with pytest.raises(wire.RefusedError) as refused:
        wire.decode_response(wire.error_response(wire.Code.NOT_FOUND, "no blob"))
    assert refused.value.code is wire.Code.NOT_FOUND and refused.value.reason == "no blob"
    with pytest.raises(wire.WireError):
        wire.decode_response(b"\x09junk")


def test_penalties_decay_and_a_ban_expires():
    now = [0.0]
    score = PeerScore(threshold=100, half_life=10, ban_seconds=60, clock=lambda: now[0])
    assert score.penalise("p", Offence.MALFORMED_GOSSIP) is False
    now[0] = 10.0
    assert score.points("p") == pytest.approx(25.0)
    assert score.penalise("p", Offence.WRONG_BLOB) is True
    assert score.is_banned("p")
    now[0] = 71.0
    assert not score.is_banned("p") and score.points("p") == 0.0


# -- key bundles: the widest fits its topic, rows and all derived by the receiver -----------

POSTER = dev_accounts()[0]
MINER = to_canonical_address(dev_accounts()[1].address)
ANCHOR = b"\x0a" * 32
#: 32x32 one-channel images (1024 features, the widest encrypted task) under E = 8 local maps:
#: 8192 SML rows, the most a bundle has.
WIDEST_INPUT = (8, 32, 32)


def test_the_widest_key_bundle_fits_its_topic_and_its_rows_are_the_miners_sml():
    rows = sml_rows(ANCHOR, MINER, MAX_ENCRYPTED_FEATURES, WIDEST_INPUT)
    assert rows.shape == (MAX_BUNDLE_KEYS, MAX_ENCRYPTED_FEATURES)
    group = get_group()
    scalars = tuple(secrets.randbelow(group.order) for _ in range(rows.shape[0]))
    keys = FunctionalKeys(group, keccak(b"a master public key"), rows, scalars)
    bundle = KeyBundle.sign(chain_id=CHAIN_ID, task_id=7, anchor_hash=ANCHOR, miner=MINER,
                            input_shape=WIDEST_INPUT, keys=keys, private_key=POSTER.key)
    encoded = bundle.encode()
    assert len(encoded) <= PAYLOAD_LIMITS[Kind.KEY_BUNDLE] == MAX_KEY_BUNDLE_SIZE
    assert MAX_KEY_BUNDLE_SIZE + FRAME_OVERHEAD <= GOSSIP_FRAME_LIMIT
    envelope = Envelope(Kind.KEY_BUNDLE, encoded)
    assert Envelope.decode(envelope.encode(), Kind.KEY_BUNDLE) == envelope
    back = KeyBundle.decode(encoded).verify(CHAIN_ID)
    assert back.functional_keys().sk == scalars
    assert np.array_equal(back.functional_keys().rows, rows)
