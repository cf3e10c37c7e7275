"""A revealed model on the gossip topic `model`: rlp([anchor hash, miner, model blob]).

Without it every hop held a gossiped PoLe block pending while it fetched the block's model
from a peer (/pole/blockdata/1), then imported it, then published it from its outbox. The
node a miner reveals its model to gossips the model once a release it holds admits it;
each node that takes it in relays it at once, so the model runs ahead of its block and the
block, when it comes, is imported by the pending queue at once, without a fetch.

A model is taken in only when a release held here admits its commitment
(keccak(model || miner || anchor), the one the seal cites): at most 64 per anchor, each
already named by a poster-signed release, so the topic carries nothing a block could not
cite. Anything else is ignored, not blamed, since two nodes may hold different releases of
one anchor (a poster may sign two). A model over the topic's 1 MiB frame is not gossiped
and travels as block data, as before.
"""
from __future__ import annotations

import rlp

from miner.messages import commitment_for
from pole_chain.net.envelope import PAYLOAD_LIMITS, Kind


class ModelGossipError(ValueError):
    """Bytes on the model topic that are not rlp([32-byte anchor, 20-byte miner, model])."""


def encode_model_gossip(anchor_hash: bytes, miner: bytes, model: bytes) -> bytes | None:
    """The topic's payload, or None when the model is too big to gossip."""
    payload = rlp.encode([bytes(anchor_hash), bytes(miner), bytes(model)])
    return payload if len(payload) <= PAYLOAD_LIMITS[Kind.MODEL] else None


def decode_model_gossip(payload: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(anchor hash, miner, model, commitment); ModelGossipError when malformed."""
    try:
        items = rlp.decode(payload, strict=True)
    except rlp.DecodingError as error:
        raise ModelGossipError(f"malformed model gossip: {error}") from error
    if not isinstance(items, list) or len(items) != 3 or not all(isinstance(i, bytes) for i in items):
        raise ModelGossipError("malformed model gossip: expected [anchor, miner, model]")
    anchor, miner, model = items
    if len(anchor) != 32 or len(miner) != 20 or not model:
        raise ModelGossipError("malformed model gossip: anchor 32 bytes, miner 20, a model")
    return anchor, miner, model, commitment_for(model, miner, anchor)
