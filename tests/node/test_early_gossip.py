"""EarlyGossip: messages that overtook their anchor block wait for it, within bounds."""
from __future__ import annotations

from pole_chain.net import Kind, Verdict
from pole_chain.node.early_gossip import EarlyGossip, HeldMessage
from tests.net.test_peer_score import Clock

ANCHOR, OTHER = b"\x01" * 32, b"\x02" * 32


def message(payload: bytes) -> HeldMessage:
    return HeldMessage(Kind.ANNOUNCEMENT, payload, lambda raw: Verdict.ACCEPT)


def test_messages_come_back_once_for_their_anchor_in_arrival_order():
    early = EarlyGossip()
    for payload in (b"a", b"b", b"a"):  # the duplicate is held once
        early.hold(ANCHOR, message(payload))
    early.hold(OTHER, message(b"c"))
    assert [m.payload for m in early.arrived(ANCHOR)] == [b"a", b"b"]
    assert early.arrived(ANCHOR) == []
    assert len(early) == 1 and [m.payload for m in early.arrived(OTHER)] == [b"c"]


def test_a_message_waits_hold_s_and_no_longer():
    clock = Clock()
    early = EarlyGossip(hold_s=10.0, clock=clock)
    early.hold(ANCHOR, message(b"old"))
    clock.now = 5.0
    early.hold(ANCHOR, message(b"new"))
    clock.now = 10.0
    assert [m.payload for m in early.arrived(ANCHOR)] == [b"new"]


def test_made_up_anchors_cannot_hold_more_than_the_bounds():
    early = EarlyGossip(max_held=8, max_per_anchor=3)
    for i in range(5):
        early.hold(ANCHOR, message(bytes([i])))
    assert [m.payload for m in early.arrived(ANCHOR)] == [b"\x02", b"\x03", b"\x04"]
    for i in range(20):
        early.hold(i.to_bytes(32, "big"), message(b"spam"))
    assert len(early) == 8
    assert early.arrived((19).to_bytes(32, "big")) != []  # the newest are kept
    assert early.arrived((0).to_bytes(32, "big")) == []
