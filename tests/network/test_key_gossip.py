"""Keys of an encrypted task travel over the network: the miner and the data node use different
nodes, as on any real network.

    nodes      node 0 (mines idle blocks; the miner's node) - node 1 (the data node's node),
               two `pole node` processes joined by libp2p
    data node  post_task(encrypt=True) of iris against node 1; its key service (the real
               KeyService) answers over node 1's RPC only
    miner      dev account 1 bonds and asks for its keys over node 0's RPC only; its request
               reaches node 1 by gossip, the bundle comes back by gossip (it carries no rows:
               the miner derives them from its SML) and decrypts the miner's SML projections
    hostile    a libp2p peer of the test (tests/net/harness.py) publishes forged key requests
               on the topic: node 1 rejects them, scores the peer down to a ban, stores and
               relays nothing; another one's request for a block node 1 does not hold yet
               costs it nothing (IGNORE), nor does a bundle for a miner without a bond (not
               even its signature is checked); a request naming a
               block that anchors no task and a bundle not signed by the task's poster cost
               it points (REJECT)
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from eth_utils import to_canonical_address

from miner.bonds import ensure_bonded, is_bonded
from miner.datasets import Dataset, decode_dataset
from miner.encrypted_tasks import (
    EncryptedTrainingSet,
    KeyBundle,
    KeyRequest,
    bundle_for,
    decode_encrypted_training_set,
)
from miner.ipfe import MasterSecretKey
from miner.key_requests import KeysNotServed, obtain_training_inputs
from miner.pole_module import pole_web3
from miner.sml import sml_for
from pole_chain.clients.data_node import load_local_task, post_task, task_dir
from pole_chain.clients.key_service import CLEAR_TRAIN_FILE, KeyService, load_master_key
from pole_chain.devnet.cluster import Cluster, ClusterNode
from pole_chain.net import Kind
from tests.net.harness import start_network
from tests.network import genesis_of, honest_and_hostile, peer_id, rpc, wait_until
from tests.network.test_misbehaving_peer import QuietChain, subscribed, wait_dropped
from vm_hooks.genesis import dev_accounts
from vm_hooks.params import CHAIN_ID
from vm_hooks.task import Task

POSTER, MINER, OTHER, LATE = (dev_accounts()[i] for i in (0, 1, 2, 9))
#: Signers of the forgeries (each a distinct message: gossip ids are content hashes); 25
#: points each against a ban at 100, decaying: the fifth or sixth bans.
FORGERS = dev_accounts()[3:9]


@dataclass(frozen=True)
class Network:
    """The two nodes and the encrypted task they both see anchored."""

    miner_node: ClusterNode
    data_node: ClusterNode
    task: Task
    msk: MasterSecretKey
    clear: Dataset
    encrypted: EncryptedTrainingSet
    input_shape: tuple[int, ...]  # the posted model's

    def requests(self, node: ClusterNode) -> list[bytes]:
        return pole_web3(node.url).pole.key_requests(self.task.task_id, self.task.anchor.hash)


def anchored_alike(nodes: list[ClusterNode], task_id: int) -> Task | None:
    """The task, with its anchor, if every node names the same anchor for it."""
    seen = [pole_web3(node.url).pole.best_task() for node in nodes]
    if any(t is None or t.task_id != task_id or t.anchor is None for t in seen):
        return None
    return seen[0] if all(t.anchor == seen[0].anchor for t in seen) else None


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    root = tmp_path_factory.mktemp("key-gossip")
    cluster = Cluster(root / "cluster", nodes=2).start()
    try:
        miner_node, data_node = cluster.members
        ensure_bonded(pole_web3(miner_node.url), MINER)
        workdir = root / "data-node"
        task_id = post_task(
            pole_web3(data_node.url), POSTER, dataset="iris", model="logreg", reward_wei=10**18,
            min_train_bps=5000, time_limit_s=900, solutions_wanted=1, workdir=workdir,
            encrypt=True,
        )
        task = wait_until(lambda: anchored_alike(cluster.members, task_id),
                          what="the task anchored alike on both nodes")
        wait_until(lambda: is_bonded(pole_web3(data_node.url), MINER.address),
                   what="the miner's bond seen by the data node's node")
        directory = task_dir(workdir, task_id)
        encrypted = decode_encrypted_training_set(pole_web3(miner_node.url).pole.get_blob(task.dataset_digest))
        clear = decode_dataset(Path(directory, CLEAR_TRAIN_FILE).read_bytes())
        yield Network(miner_node, data_node, task, load_master_key(directory), clear, encrypted,
                      load_local_task(workdir, task_id).spec().input_shape)
    finally:
        cluster.stop()


def test_a_miner_gets_its_keys_from_a_data_node_on_another_node(network):
    miner_w3, data_w3 = pole_web3(network.miner_node.url), pole_web3(network.data_node.url)
    miner = to_canonical_address(MINER.address)
    sml = sml_for(network.task.anchor.hash, miner, network.encrypted.d)
    with pytest.raises(KeysNotServed, match="requested, not served yet"):  # on its own node
        obtain_training_inputs(miner_w3, MINER, network.task, network.encrypted, sml, CHAIN_ID)
    asked = wait_until(lambda: network.requests(network.data_node),
                       what="the key request gossiped to the data node's node")
    assert [KeyRequest.decode(raw).miner for raw in asked] == [miner]

    service = KeyService(data_w3, POSTER, network.task.task_id, network.msk, network.input_shape)
    assert service.serve() == 1  # answered over node 1's RPC only
    raw = wait_until(lambda: miner_w3.pole.get_keys(network.task.task_id, network.task.anchor.hash, miner),
                     what="the key bundle gossiped to the miner's node")
    assert raw == data_w3.pole.get_keys(network.task.task_id, network.task.anchor.hash, miner)
    assert KeyBundle.decode(raw).verify(CHAIN_ID).poster == to_canonical_address(POSTER.address)

    indexed, decrypted = obtain_training_inputs(miner_w3, MINER, network.task, network.encrypted,
                                                sml, CHAIN_ID)
    assert np.array_equal(decrypted.apply_int(indexed.features), sml.apply_int(network.clear.features))


def test_a_peer_gossiping_forged_key_requests_is_banned_and_nothing_is_stored(network):
    node = network.data_node
    attacker, observer, observer_sink = honest_and_hostile(node, QuietChain)
    try:
        for peer in (attacker, observer):
            wait_until(lambda p=peer: subscribed(p, peer_id(node), Kind.KEY_REQUEST),
                       what="subscriptions")
        before = {n.url: network.requests(n) for n in (network.miner_node, node)}
        task_id, anchor = network.task.task_id, network.task.anchor.hash
        # the right task and anchor, claiming to be MINER's request, signed by someone else
        forged = [KeyRequest.sign(chain_id=CHAIN_ID, task_id=task_id, anchor_hash=anchor,
                                  private_key=forger.key).copy(miner=to_canonical_address(MINER.address))
                  .encode() for forger in FORGERS]
        for message in forged:
            attacker.publish_key_request(message)
        wait_dropped(node, attacker, "the forger dropped")
        assert {n.url: network.requests(n) for n in (network.miner_node, node)} == before
        # OTHER's genuine request, sent to the miner's node, reaches the observer through
        # node 1: relaying works, and the forgeries never took that path
        valid = KeyRequest.sign(chain_id=CHAIN_ID, task_id=task_id, anchor_hash=anchor,
                                private_key=OTHER.key)
        assert pole_web3(network.miner_node.url).pole.request_keys(valid.encode()) is True
        observer_sink.wait_for(lambda s: valid.encode() in s.payloads("key-request"))
        assert not set(forged) & set(observer_sink.payloads("key-request"))
        assert observer.peer_id in {p["id"] for p in rpc(node, "admin_peers")}
        log = node.log_path.read_text()
        assert f"peer {attacker.peer_id} banned after INVALID_GOSSIP" in log
    finally:
        attacker.stop()
        observer.stop()


def penalty(node: ClusterNode, peer: str) -> float:
    return next(p["penalty"] for p in rpc(node, "admin_peers") if p["id"] == peer)


def test_an_unknown_anchor_costs_a_peer_nothing_a_wrong_anchor_or_signer_costs_points(network):
    node = network.data_node
    genesis = genesis_of(node)
    sloppy = start_network(QuietChain(genesis))
    try:
        sloppy.add_peer(node.multiaddr)
        for kind in (Kind.KEY_REQUEST, Kind.KEY_BUNDLE):
            wait_until(lambda k=kind: subscribed(sloppy, peer_id(node), k), what="subscriptions")
        task_id, anchor = network.task.task_id, network.task.anchor.hash
        before = network.requests(node)

        def request(anchor_hash: bytes, account=LATE) -> KeyRequest:
            return KeyRequest.sign(chain_id=CHAIN_ID, task_id=task_id, anchor_hash=anchor_hash,
                                   private_key=account.key)

        unknown = secrets.token_bytes(32)  # a block node 1 has not seen (yet): IGNORE
        sloppy.publish_key_request(request(unknown).encode())
        sloppy.publish_key_request(request(genesis).encode())  # anchors no task: REJECT
        # LATE holds no bond: nobody would admit it, so it is not even verified: IGNORE
        mine = bundle_for(network.msk, request(anchor), network.input_shape, private_key=LATE.key)
        sloppy.publish_key_bundle(mine.encode())
        # for the bonded MINER, but signed by LATE, not by the task's poster: REJECT
        forged = bundle_for(network.msk, request(anchor, MINER), network.input_shape, private_key=LATE.key)
        sloppy.publish_key_bundle(forged.encode())
        sloppy.publish_key_request(request(anchor).encode())  # valid: ACCEPT, stored
        wait_until(lambda: network.requests(node) == before + [request(anchor).encode()],
                   what="the valid request stored")
        wait_until(lambda: penalty(node, sloppy.peer_id) > 45, what="two offences scored")
        assert penalty(node, sloppy.peer_id) <= 50  # the unknown anchor and LATE's bundle: nothing
        data_w3 = pole_web3(node.url)
        assert data_w3.pole.get_keys(task_id, anchor, mine.miner) is None
        assert data_w3.pole.key_requests(task_id, unknown) == []
        assert data_w3.pole.key_requests(task_id, genesis) == []
    finally:
        sloppy.stop()
