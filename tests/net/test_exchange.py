"""Blob, status, header-range and block-range requests between real hosts on loopback."""

from __future__ import annotations

import os
import time

import pytest
import rlp
from eth_utils import keccak
from libp2p.peer.id import ID
from libp2p.request_response import RequestResponseError

from pole_chain.net import RefusedError
from pole_chain.net import wire
from tests.net.harness import (
    ChainFixture,
    DictChain,
    RecordingSink,
    connected,
    eventually,
    link,
    start_network,
)

DEV_BLOCKS = 4


@pytest.fixture(scope="module")
def server():
    """A host on a real dev chain with 4 blocks on top of genesis."""
    server_chain = ChainFixture(DEV_BLOCKS)
    net = start_network(server_chain)
    yield net, server_chain
    net.stop()


@pytest.fixture
def chain_pair(server):
    """The server and a fresh client on the same genesis (fresh: malformed requests cost
    the sender points, and five of them would get one client banned)."""
    server_net, server_chain = server
    client_sink = RecordingSink()
    client = start_network(ChainFixture(0), client_sink)
    link(client, server_net)
    yield server_net, client, server_chain, client_sink
    client.stop()


def raw_request(net, peer_id: str, protocol: str, payload: bytes) -> bytes:
    """A request with hand-made bytes, as a buggy or hostile peer would send it."""
    return net._call(net._host.exchange._request, ID.from_base58(peer_id), protocol, payload, 4096)


def test_status_handshake_reports_the_real_head(chain_pair):
    server, client, server_chain, client_sink = chain_pair
    client_sink.wait_for(lambda s: server.peer_id in s.statuses)
    status = client_sink.statuses[server.peer_id]
    assert status == server_chain.head()
    assert status.head_number == DEV_BLOCKS
    assert next(p for p in client.peers() if p.peer_id == server.peer_id).status == status
    assert client.request_status(server.peer_id) == server_chain.head()


def test_header_range_answers_from_the_chain(chain_pair):
    server, client, server_chain, _ = chain_pair
    encoded = client.request_headers(server.peer_id, 1, 10)
    header_class = type(server_chain.chain.get_canonical_head())
    headers = [rlp.decode(item, sedes=header_class) for item in encoded]
    assert [h.block_number for h in headers] == list(range(1, DEV_BLOCKS + 1))
    assert headers[-1].hash == server_chain.head().head_hash
    assert headers[0].parent_hash == server_chain.genesis_hash()
    assert client.request_headers(server.peer_id, DEV_BLOCKS + 1, 5) == []


def test_block_range_answers_from_the_chain(chain_pair):
    server, client, server_chain, _ = chain_pair
    encoded = client.request_blocks(server.peer_id, 0, 3)
    expected = server_chain.blocks(0, 3)
    assert encoded == list(expected)


@pytest.mark.parametrize(
    "protocol, payload, reason",
    [
        (wire.HEADERS_PROTOCOL, b"\xff\x00junk", "malformed"),
        (wire.HEADERS_PROTOCOL, rlp.encode([0, wire.MAX_HEADERS_PER_REQUEST + 1]), "count"),
        (wire.BLOCKS_PROTOCOL, rlp.encode([0, 0]), "count"),
        (wire.BLOB_PROTOCOL, b"short", "digest"),
        (wire.STATUS_PROTOCOL, rlp.encode([b"x", b"y", 1, 2]), "hash"),
    ],
)
def test_malformed_requests_get_bad_request_and_the_host_keeps_working(
    chain_pair, protocol, payload, reason
):
    server, client, server_chain, _ = chain_pair
    with pytest.raises(RefusedError) as refused:
        raw_request(client, server.peer_id, protocol, payload)
    assert refused.value.code is wire.Code.BAD_REQUEST
    assert reason in refused.value.reason
    assert client.request_status(server.peer_id) == server_chain.head()


def test_oversized_request_is_cut_off_and_the_host_keeps_working(chain_pair):
    server, client, server_chain, _ = chain_pair
    with pytest.raises(RequestResponseError):
        raw_request(client, server.peer_id, wire.HEADERS_PROTOCOL, b"\x00" * 2000)
    assert len(client.request_headers(server.peer_id, 0, 2)) == 2
    assert connected(client, server)


@pytest.fixture
def blob_peers():
    nets = []

    def make(chain):
        net = start_network(chain)
        nets.append(net)
        return net

    yield make
    for net in nets:
        net.stop()


def test_three_megabyte_blob_is_fetched_by_digest(blob_peers):
    holder_chain = DictChain()
    data = os.urandom(3 * 1024 * 1024)
    digest = holder_chain.put(data)
    holder, fetcher = blob_peers(holder_chain), blob_peers(DictChain())
    link(fetcher, holder)
    started = time.perf_counter()
    assert fetcher.fetch_blob(digest) == data
    print(f"3 MiB blob fetched in {time.perf_counter() - started:.3f} s")
    assert fetcher.fetch_blob(keccak(b"nobody has this")) is None


def test_wrong_bytes_are_refused_and_the_liar_dropped(blob_peers):
    liar_chain = DictChain(lie=True)
    digest = liar_chain.put(b"the real bytes" * 1000)
    liar, fetcher = blob_peers(liar_chain), blob_peers(DictChain())
    link(fetcher, liar)
    assert fetcher.fetch_blob(digest) is None
    eventually(lambda: not connected(fetcher, liar))  # WRONG_BLOB alone passes the threshold
    honest_chain = DictChain()
    honest_chain.put(b"the real bytes" * 1000)
    honest = blob_peers(honest_chain)
    link(fetcher, honest)
    assert fetcher.fetch_blob(digest) == b"the real bytes" * 1000


def test_a_peer_on_another_genesis_is_disconnected(blob_peers):
    ours, theirs = blob_peers(DictChain(b"\x01" * 32)), blob_peers(DictChain(b"\x09" * 32))
    ours.add_peer(theirs.node_info().addrs[0])
    eventually(lambda: not connected(ours, theirs) and ours.peer_count() == 0)


def test_block_data_is_fetched_by_release_prefix_and_commitment(blob_peers):
    holder_chain = DictChain()
    release = b"a signed release" * 10
    holder_chain.put(release)
    model = b"model bytes" * 100
    commitment = keccak(model + b"miner")
    holder_chain.models[commitment] = model
    holder, fetcher = blob_peers(holder_chain), blob_peers(DictChain())
    link(fetcher, holder)
    prefix = keccak(release)[:20]
    matches = lambda _release, blob: keccak(blob + b"miner") == commitment  # noqa: E731
    assert fetcher.fetch_block_data(prefix, commitment, matches) == (release, model)
    # nobody holds a model for another commitment: None, and the holder is not blamed
    assert fetcher.fetch_block_data(prefix, keccak(b"other"), matches) is None
    assert connected(fetcher, holder)
    # a model that does not match the block costs the sender (WRONG_BLOB: a ban)
    assert fetcher.fetch_block_data(prefix, commitment, lambda _release, _blob: False) is None
    eventually(lambda: not connected(fetcher, holder))
