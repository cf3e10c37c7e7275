"""Identity across restarts and the admin_* peer operations, on real loopback hosts."""

from __future__ import annotations

import stat

import pytest

from pole_chain.net import PeerRefusedError
from pole_chain.net.identity import PeerKeyError, load_or_create_peer_key, peer_key_path
from tests.net.harness import DictChain, connected, eventually, link, start_network


def test_identity_persists_across_restart(tmp_path):
    first = start_network(DictChain(), datadir=tmp_path)
    peer_id = first.peer_id
    first.stop()
    assert stat.S_IMODE(peer_key_path(tmp_path).stat().st_mode) == 0o600
    second = start_network(DictChain(), datadir=tmp_path)
    try:
        assert second.peer_id == peer_id
        address = second.node_info().addrs[0]
        assert address.startswith("/ip4/127.0.0.1/tcp/") and address.endswith(f"/p2p/{peer_id}")
        assert not address.startswith("/ip4/127.0.0.1/tcp/0/")  # the real port is reported
    finally:
        second.stop()


def test_a_corrupt_peer_key_is_an_error_not_a_new_identity(tmp_path):
    load_or_create_peer_key(tmp_path)
    peer_key_path(tmp_path).write_text("not hex\n")
    with pytest.raises(PeerKeyError):
        load_or_create_peer_key(tmp_path)


@pytest.fixture
def pair():
    a, b = start_network(DictChain()), start_network(DictChain())
    yield a, b
    a.stop()
    b.stop()


def test_add_peer_shows_both_directions_and_counts(pair):
    a, b = pair
    assert a.peer_count() == 0
    link(a, b)
    assert [p.direction for p in a.peers()] == ["outbound"]
    assert [p.direction for p in b.peers()] == ["inbound"]
    assert a.peer_count() == b.peer_count() == 1
    assert a.peers()[0].addrs[0] in b.node_info().addrs[0]


def test_remove_peer_disconnects_and_does_not_redial(pair):
    a, b = pair
    link(a, b)
    assert a.remove_peer(b.peer_id) is True
    eventually(lambda: a.peer_count() == 0 and b.peer_count() == 0)
    assert a.remove_peer(b.peer_id) is False


def test_refused_peer_cannot_connect_until_allowed(pair):
    a, b = pair
    link(a, b)
    a.refuse_peer(b.peer_id)
    eventually(lambda: not connected(a, b) and b.peer_count() == 0)
    assert a.refused_peers() == {b.peer_id}
    with pytest.raises(PeerRefusedError):
        a.add_peer(b.node_info().addrs[0])
    b.add_peer(a.node_info().addrs[0])  # b dials a; a drops the connection at once
    eventually(lambda: a.peer_count() == 0 and b.peer_count() == 0)
    a.allow_peer(b.peer_id)
    link(a, b)


def test_static_peer_is_redialled_after_it_restarts(tmp_path):
    b = start_network(DictChain(), datadir=tmp_path, listen="/ip4/127.0.0.1/tcp/0")
    address = b.node_info().addrs[0]
    port = address.split("/")[4]
    a = start_network(DictChain(), bootstrap=(address,), redial_interval=0.2)
    try:
        eventually(lambda: connected(a, b))
        b.stop()
        eventually(lambda: a.peer_count() == 0)
        b = start_network(DictChain(), datadir=tmp_path, listen=f"/ip4/127.0.0.1/tcp/{port}")
        eventually(lambda: connected(a, b))
    finally:
        a.stop()
        b.stop()
