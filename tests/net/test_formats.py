"""The byte formats and the penalty arithmetic, without a network (the key bundle's gossip
form is the node's, pole_chain/node/key_book.py, but its bound is the topic's limit)."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
import rlp
from eth_utils import keccak, to_canonical_address

from miner.encrypted_tasks import MAX_ENCRYPTED_FEATURES, KeyBundle
from miner.ipfe import FunctionalKeys, get_group, sml_rows
from miner.messages import MessageError
from pole_chain.net import ChainStatus, Envelope, EnvelopeError, Kind
from pole_chain.net import wire
from pole_chain.net.envelope import (
    GOSSIP_FRAME_LIMIT,
    MAX_KEY_BUNDLE_GOSSIP_SIZE,
    PAYLOAD_LIMITS,
    topic_name,
)
from pole_chain.net.peer_score import Offence, PeerScore
from pole_chain.node.key_book import KeyRequestRejected, bundle_from_gossip_form, bundle_gossip_form
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


# -- key bundles: the gossip form leaves out the rows every node derives from the SML ------

POSTER = dev_accounts()[0]
MINER = to_canonical_address(dev_accounts()[1].address)
ANCHOR = b"\x0a" * 32


def key_bundle(features: int, rows: np.ndarray | None = None) -> KeyBundle:
    """A poster-signed bundle of `features`-wide keys: the miner's SML rows unless `rows`."""
    rows = sml_rows(ANCHOR, MINER, features) if rows is None else rows
    group = get_group()
    scalars = tuple(secrets.randbelow(group.order) for _ in range(rows.shape[0]))
    keys = FunctionalKeys(group, keccak(b"a master public key"), rows, scalars)
    return KeyBundle.sign(chain_id=CHAIN_ID, task_id=7, anchor_hash=ANCHOR, miner=MINER,
                          keys=keys.to_bytes(), private_key=POSTER.key)


def test_the_widest_key_bundle_fits_its_topic_in_gossip_form_and_comes_back_signed():
    bundle = key_bundle(MAX_ENCRYPTED_FEATURES)
    assert len(bundle.encode()) > GOSSIP_FRAME_LIMIT  # with its rows it would not travel at all
    form = bundle_gossip_form(bundle)
    assert len(form) <= PAYLOAD_LIMITS[Kind.KEY_BUNDLE] == MAX_KEY_BUNDLE_GOSSIP_SIZE
    envelope = Envelope(Kind.KEY_BUNDLE, form)
    assert Envelope.decode(envelope.encode(), Kind.KEY_BUNDLE) == envelope
    back = bundle_from_gossip_form(KeyBundle.decode(form)).verify(CHAIN_ID)
    assert back.encode() == bundle.encode()


def test_key_bundles_not_for_the_miners_sml_stay_home():
    rows = -sml_rows(ANCHOR, MINER, 4)  # the right shape, not the miner's rows
    with pytest.raises(KeyRequestRejected, match="not for this miner's SML rows"):
        bundle_gossip_form(key_bundle(4, rows))


def _carrier_with_keys(keys_field: bytes) -> KeyBundle:
    return KeyBundle.decode(bundle_gossip_form(key_bundle(4))).copy(keys=keys_field)


@pytest.mark.parametrize(
    "keys_field, reason",
    [
        (b"\x01junk", "KeyBundle gossip form: "),
        (rlp.encode([4, b"d" * 32]), "KeyBundle gossip form: "),
        (rlp.encode([0, b"d" * 32, b"s" * 32]), "0 features outside 1..1024"),
        (rlp.encode([MAX_ENCRYPTED_FEATURES + 1, b"d" * 32, b"s" * 32]), "1025 features"),
        (rlp.encode([4, b"d" * 31, b"s" * 256]), "a 32-byte digest and 32-byte scalars"),
        (rlp.encode([4, b"d" * 32, b"s" * 255]), "a 32-byte digest and 32-byte scalars"),
        (rlp.encode([4, [b"d"], b"s" * 256]), "must be bytes"),
        (rlp.encode([4, b"d" * 32, b"s" * 32]), "do not match 1 scalars"),  # 8 rows, 1 key
    ],
)
def test_malformed_gossip_forms_are_refused(keys_field, reason):
    with pytest.raises(MessageError, match=reason):
        bundle_from_gossip_form(_carrier_with_keys(keys_field))


def test_a_tampered_gossip_form_fails_the_posters_signature():
    carrier = KeyBundle.decode(bundle_gossip_form(key_bundle(4)))
    n, digest, scalars = rlp.decode(carrier.keys)
    tampered = carrier.copy(keys=rlp.encode([n, digest, bytes([scalars[0] ^ 1]) + scalars[1:]]))
    with pytest.raises(MessageError, match="signed by"):
        bundle_from_gossip_form(tampered).verify(CHAIN_ID)
