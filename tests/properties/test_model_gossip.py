"""The model topic's payload (pole_chain/node/model_gossip.py) from outside bytes: it decodes to
an anchor, a miner, a model and the commitment the seal would cite, or raises
ModelGossipError; nothing else escapes, and what decodes is exactly what was encoded."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from miner.messages import commitment_for
from pole_chain.node.model_gossip import ModelGossipError, decode_model_gossip, encode_model_gossip
from tests.properties.mutations import mutated, rlp_mutated

ANCHORS = st.binary(min_size=32, max_size=32)
MINERS = st.binary(min_size=20, max_size=20)
MODELS = st.binary(min_size=1, max_size=2048)
VALID = st.builds(encode_model_gossip, ANCHORS, MINERS, MODELS)


@settings(max_examples=200)
@given(ANCHORS, MINERS, MODELS)
def test_what_is_encoded_decodes_with_its_commitment(anchor, miner, model):
    decoded = decode_model_gossip(encode_model_gossip(anchor, miner, model))
    assert decoded == (anchor, miner, model, commitment_for(model, miner, anchor))


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=256), mutated(VALID), rlp_mutated(VALID)))
def test_any_bytes_decode_or_raise_model_gossip_error(data):
    try:
        anchor, miner, model, commitment = decode_model_gossip(data)
    except ModelGossipError:
        return
    assert len(anchor) == 32 and len(miner) == 20 and model
    assert encode_model_gossip(anchor, miner, model) == data  # one encoding per message
    assert commitment == commitment_for(model, miner, anchor)
