"""The gossip envelope: every message on a PoLe topic is rlp([kind, version, payload]).

The kind must match the topic it arrived on and the version must be one this node speaks,
so a future format change is a new version number rather than a silent misparse. Limits are
per topic and sit under gossipsub's own 1 MiB frame limit; anything bigger (models,
datasets, test sets) travels as a blob by digest (see blob exchange in docs/NETWORK.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import rlp
from rlp.sedes import big_endian_int

from miner.encrypted_tasks import MAX_KEY_BUNDLE_SIZE, MAX_KEY_REQUEST_SIZE
from miner.messages import MAX_MESSAGE_SIZE

ENVELOPE_VERSION = 1
#: Room the envelope, the pubsub message fields and its signature take inside a frame.
FRAME_OVERHEAD = 4 * 1024
#: gossipsub's inbound RPC frame limit in py-libp2p 0.8.1 (rpc_queue.DefaultMaxMessageSize).
GOSSIP_FRAME_LIMIT = 1024 * 1024


class Kind(enum.Enum):
    """What a gossip message carries; the value is its topic's last path segment."""

    TRANSACTION = "tx"
    BLOCK = "block"
    ANNOUNCEMENT = "announcement"
    RELEASE = "release"
    KEY_REQUEST = "key-request"
    KEY_BUNDLE = "key-bundle"
    MODEL = "model"


#: Largest payload accepted per kind. Transactions follow geth's txMaxSize (128 KiB); the
#: signed messages their own codec's limit; blocks and models whatever the frame leaves (a
#: bigger model travels only as block data, fetched by /pole/blockdata/1).
PAYLOAD_LIMITS: dict[Kind, int] = {
    Kind.TRANSACTION: 128 * 1024,
    Kind.BLOCK: GOSSIP_FRAME_LIMIT - FRAME_OVERHEAD,
    Kind.ANNOUNCEMENT: MAX_MESSAGE_SIZE,
    Kind.RELEASE: MAX_MESSAGE_SIZE,
    Kind.KEY_REQUEST: MAX_KEY_REQUEST_SIZE,
    Kind.KEY_BUNDLE: MAX_KEY_BUNDLE_SIZE,
    Kind.MODEL: GOSSIP_FRAME_LIMIT - FRAME_OVERHEAD,
}


class EnvelopeError(ValueError):
    """A gossip message that is not a well-formed envelope of the expected kind and size."""


@dataclass(frozen=True)
class Envelope:
    """One gossip message: kind, format version and the opaque payload the node decodes."""

    kind: Kind
    payload: bytes
    version: int = ENVELOPE_VERSION

    def encode(self) -> bytes:
        """The bytes that travel: rlp([kind, version, payload])."""
        if len(self.payload) > PAYLOAD_LIMITS[self.kind]:
            raise EnvelopeError(
                f"{self.kind.value} payload of {len(self.payload)} bytes exceeds the "
                f"limit of {PAYLOAD_LIMITS[self.kind]}"
            )
        return rlp.encode([self.kind.value.encode(), self.version, self.payload])

    @classmethod
    def decode(cls, data: bytes, expected: Kind) -> "Envelope":
        """Parse `data` received on `expected`'s topic; raise EnvelopeError on anything off."""
        limit = PAYLOAD_LIMITS[expected]
        if len(data) > limit + 64:
            raise EnvelopeError(f"{expected.value} message of {len(data)} bytes is too large")
        try:
            kind_raw, version_raw, payload = rlp.decode(data, strict=True)
            version = big_endian_int.deserialize(version_raw)
        except (rlp.DecodingError, rlp.DeserializationError, ValueError, TypeError) as error:
            raise EnvelopeError(f"malformed envelope: {error}") from error
        if not isinstance(payload, bytes):
            raise EnvelopeError("malformed envelope: the payload is a list")
        if kind_raw != expected.value.encode():
            raise EnvelopeError(f"kind {kind_raw!r} on the {expected.value} topic")
        if version != ENVELOPE_VERSION:
            raise EnvelopeError(f"unsupported envelope version {version}")
        if len(payload) > limit:
            raise EnvelopeError(
                f"{expected.value} payload of {len(payload)} bytes exceeds the limit of {limit}"
            )
        return cls(kind=expected, payload=payload, version=version)


def topic_name(kind: Kind, genesis_hash: bytes) -> str:
    """The gossipsub topic of `kind` on the chain with this genesis.

    The genesis prefix keeps a dev chain's gossip apart from another chain's even if their
    nodes meet.
    """
    return f"/pole/{genesis_hash[:8].hex()}/{kind.value}/{ENVELOPE_VERSION}"
