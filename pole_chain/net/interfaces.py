"""What the network needs from the node, and what it tells the node.

The network package knows nothing of py-evm, the mempool or the blob store: the node plugs
itself in through two small protocols. `ChainView` is read-only (the network answers peers'
status, header, block and blob requests from it); `NodeSink` receives every gossip message
before it is relayed, and its `Verdict` decides whether the message travels on and whether
its sender is penalised. Both are called on worker threads, never on the trio loop, so they
may block on the node's lock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, Sequence


class Verdict(enum.Enum):
    """The node's answer to one gossip message, in gossipsub's own three-way terms.

    ACCEPT relays it; IGNORE drops it without blame (a duplicate, a block whose parent is
    not here yet); REJECT drops it and penalises the peer that sent it (bad signature,
    malformed, an invalid seal).
    """

    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"


@dataclass(frozen=True)
class ChainStatus:
    """One side of the status handshake: which chain, and how far it has come.

    `total_score` is py-evm's chain score (the sum of difficulties, i.e. PoLe scores), the
    quantity fork choice compares; a peer with a higher one has a chain worth syncing.
    """

    genesis_hash: bytes
    head_hash: bytes
    head_number: int
    total_score: int


@dataclass(frozen=True)
class PeerRecord:
    """A connected peer as `admin_peers` shows it."""

    peer_id: str
    addrs: tuple[str, ...]
    direction: str  # "inbound", "outbound" or "unknown"
    penalty: float  # decaying penalty points (pole_chain.net.peer_score); 0 is clean
    status: ChainStatus | None


@dataclass(frozen=True)
class NodeInfo:
    """This node as `admin_nodeInfo` shows it: its id and dialable multiaddrs."""

    peer_id: str
    addrs: tuple[str, ...]  # each ends in /p2p/<peer_id>, ready for admin_addPeer
    protocols: tuple[str, ...]
    status: ChainStatus


class ChainView(Protocol):
    """Read-only access to the node's chain and blobs, for answering peers."""

    def genesis_hash(self) -> bytes:
        """Hash of block 0; peers on another genesis are disconnected."""
        ...

    def head(self) -> ChainStatus:
        """The canonical head now (genesis hash included)."""
        ...

    def headers(self, start: int, count: int) -> Sequence[bytes]:
        """RLP-encoded canonical headers start, start+1, ...; fewer (or none) past the head."""
        ...

    def blocks(self, start: int, count: int) -> Sequence[bytes]:
        """RLP-encoded canonical blocks start, start+1, ...; fewer (or none) past the head."""
        ...

    def blob(self, digest: bytes) -> bytes | None:
        """The blob whose keccak is `digest`, or None when this node does not hold it."""
        ...

    def block_data(self, release_prefix: bytes, commitment: bytes) -> tuple[bytes, bytes]:
        """(release, model) a PoLe block names by digest prefix and commitment; b"" if absent.

        Not content digests, so the blob protocol cannot serve them; the receiver checks
        the release against the prefix and the model against the commitment.
        """
        ...


class NodeSink(Protocol):
    """Where validated gossip goes. Each call validates and, on ACCEPT, takes the item in."""

    def on_transaction(self, raw: bytes) -> Verdict:
        """A signed transaction (its canonical encoding, as eth_sendRawTransaction takes)."""
        ...

    def on_block(self, rlp_block: bytes) -> Verdict:
        """An RLP-encoded block."""
        ...

    def on_announcement(self, message: bytes) -> Verdict:
        """An encoded miner.messages.SolutionAnnouncement."""
        ...

    def on_release(self, message: bytes) -> Verdict:
        """An encoded miner.messages.Release."""
        ...

    def on_key_request(self, message: bytes) -> Verdict:
        """An encoded miner.encrypted_tasks.KeyRequest."""
        ...

    def on_key_bundle(self, message: bytes) -> Verdict:
        """An encoded miner.encrypted_tasks.KeyBundle."""
        ...

    def on_model(self, message: bytes) -> Verdict:
        """A revealed model with its miner and anchor (pole_chain.node.model_gossip), sent
        ahead of the PoLe block that cites it so each hop need not fetch it."""
        ...

    def on_peer_status(self, peer_id: str, status: ChainStatus) -> None:
        """A peer's status after the handshake: the hook that starts a sync when it leads."""
        ...
