"""Gossip between real hosts on loopback: A - B - C in a line, B relays A's messages to C."""

from __future__ import annotations

import pytest

from pole_chain.net import Envelope, EnvelopeError, Kind
from pole_chain.net.envelope import PAYLOAD_LIMITS
from pole_chain.net.peer_score import Offence
from tests.net.harness import DictChain, RecordingSink, eventually, link, meshed, start_network

PUBLISH = {
    Kind.TRANSACTION: "publish_transaction",
    Kind.BLOCK: "publish_block",
    Kind.ANNOUNCEMENT: "publish_announcement",
    Kind.RELEASE: "publish_release",
    Kind.KEY_REQUEST: "publish_key_request",
    Kind.KEY_BUNDLE: "publish_key_bundle",
    Kind.MODEL: "publish_model",
}
SINK_KIND = {
    Kind.TRANSACTION: "tx",
    Kind.BLOCK: "block",
    Kind.ANNOUNCEMENT: "announcement",
    Kind.RELEASE: "release",
    Kind.KEY_REQUEST: "key-request",
    Kind.KEY_BUNDLE: "key-bundle",
    Kind.MODEL: "model",
}


@pytest.fixture
def line():
    """Three hosts A - B - C, connected and meshed; A and C are not connected."""
    sinks = [RecordingSink() for _ in range(3)]
    nets = [start_network(DictChain(), sink) for sink in sinks]
    a, b, c = nets
    link(b, a)
    link(c, b)
    eventually(lambda: meshed(a, b) and meshed(b, c))
    yield nets, sinks
    for net in nets:
        net.stop()


@pytest.mark.parametrize("kind", list(Kind))
def test_each_topic_reaches_every_host_over_two_hops(line, kind):
    (a, _, _), (sink_a, sink_b, sink_c) = line
    payload = f"{kind.value} payload".encode()
    getattr(a, PUBLISH[kind])(payload)
    sink_c.wait_for(lambda s: payload in s.payloads(SINK_KIND[kind]))
    assert payload in sink_b.payloads(SINK_KIND[kind])
    assert sink_a.payloads() == []  # the publisher's own message never comes back to it


def test_invalid_message_is_not_relayed_and_sender_is_penalised(line):
    (a, b, _), (_, sink_b, sink_c) = line
    a.publish_block(b"bad block")
    sink_b.wait_for(lambda s: b"bad block" in s.payloads())
    # B has rejected it; a valid message sent after it arrives at C, the bad one never does.
    a.publish_block(b"good block")
    sink_c.wait_for(lambda s: b"good block" in s.payloads())
    assert b"bad block" not in sink_c.payloads()
    record = next(p for p in b.peers() if p.peer_id == a.peer_id)
    assert record.penalty > 0


def test_repeated_offences_disconnect_the_sender_and_it_stays_refused(line):
    (a, b, c), (_, sink_b, _) = line
    # 25 points each against a threshold of 100; points decay, so the fourth alone may
    # fall just short of it, the fifth does not.
    for number in range(5):
        a.publish_transaction(b"bad tx %d" % number)
    sink_b.wait_for(lambda s: len(s.payloads("tx")) >= 4)
    eventually(lambda: a.peer_id not in {p.peer_id for p in b.peers()})
    # A still wants B as a static peer and redials; B drops it while the ban lasts.
    a.add_peer(b.node_info().addrs[0])
    eventually(lambda: a.peer_id not in {p.peer_id for p in b.peers()})
    assert c.peer_id in {p.peer_id for p in b.peers()}  # the honest peer is untouched


def test_malformed_envelope_is_dropped_and_penalised(line):
    (a, b, _), (_, sink_b, _) = line
    topic = a._host.gossip.topics[Kind.BLOCK]
    a._call(a._host.pubsub.publish, topic, b"\xc3not an envelope")
    # Malformed weighs more than merely invalid (points decay, so compare, not equate).
    eventually(
        lambda: next(p for p in b.peers() if p.peer_id == a.peer_id).penalty
        > Offence.INVALID_GOSSIP.points
    )
    assert sink_b.payloads() == []  # the node never saw it


def test_oversized_payload_is_refused_before_it_is_sent(line):
    (a, _, _), _ = line
    with pytest.raises(EnvelopeError):
        a.publish_transaction(b"x" * (PAYLOAD_LIMITS[Kind.TRANSACTION] + 1))


def test_envelope_of_another_kind_is_rejected_on_decode():
    data = Envelope(Kind.TRANSACTION, b"tx").encode()
    with pytest.raises(EnvelopeError):
        Envelope.decode(data, Kind.BLOCK)
