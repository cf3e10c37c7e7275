"""Fork choice is py-evm's score (sum of difficulty) with a deterministic tie-break."""
from eth_utils import keccak

from pole_chain.chain.block_production import produce_pole_block
from vm_hooks.chain import tiebreak_key
from vm_hooks.consensus import state_at
from vm_hooks.registry_calls import read_task, view

from .conftest import address_of, miner_key, replay


def sibling(task_chain, *, miner: bytes, test_bps: int, timestamp=None):
    """A PoLe block by miner ``miner`` (a key label) on a copy of the producer chain's head."""
    producer = replay(task_chain.blocks)
    return produce_pole_block(
        producer, [], signer=miner_key(miner), task_id=1, model_commitment=keccak(miner),
        train_bps=9_000, test_bps=test_bps, release_digest=keccak(b"release"), timestamp=timestamp,
    ).block


def test_higher_score_wins_whatever_the_arrival_order(task_chain):
    low = sibling(task_chain, miner=b"\x01", test_bps=8_000)
    high = sibling(task_chain, miner=b"\x02", test_bps=9_000)
    for order in ([low, high], [high, low]):
        node = replay(task_chain.blocks + order)
        assert node.get_canonical_head() == high.header
        state = state_at(node.chaindb.db, high.header)
        (winner, *_rest) = view(state, "get_result", [1])[0]
        assert bytes.fromhex(winner[2:]) == address_of(miner_key(b"\x02"))


def test_equal_scores_break_ties_the_same_way_on_every_node(task_chain):
    first = sibling(task_chain, miner=b"\x03", test_bps=9_000)
    second = sibling(task_chain, miner=b"\x04", test_bps=9_000)
    expected = min(first.header, second.header, key=tiebreak_key)
    assert tiebreak_key(expected) == keccak(keccak(b"release")[:24] + expected.coinbase)
    heads = {replay(task_chain.blocks + order).get_canonical_head() for order in ([first, second], [second, first])}
    assert heads == {expected}


def test_a_miners_second_wrapping_of_its_seal_cannot_take_over_the_block(task_chain):
    """Only the coinbase can sign a wrapping of its seal (others are refused: test_seal_signature),
    and its own second wrapping, with another timestamp and any block hash, does not replace
    the first seen."""
    honest = sibling(task_chain, miner=b"\x07", test_bps=9_000)
    lower_hash_copy = None
    for offset in range(1, 65):  # grind the timestamp until the copy's hash is lower
        copy = sibling(
            task_chain, miner=b"\x07", test_bps=9_000, timestamp=honest.header.timestamp + offset
        )
        if copy.hash < honest.hash:
            lower_hash_copy = copy
            break
    assert lower_hash_copy is not None  # a block-hash tie-break would switch to it
    for order in ([honest, lower_hash_copy], [lower_hash_copy, honest]):
        node = replay(task_chain.blocks + order)
        assert node.get_canonical_head() == order[0].header  # the first seen stays


def test_reorg_moves_the_settlement_to_the_new_winner(task_chain):
    low = sibling(task_chain, miner=b"\x05", test_bps=7_000)
    high = sibling(task_chain, miner=b"\x06", test_bps=7_500)
    node = replay(task_chain.blocks + [low])
    low_state = state_at(node.chaindb.db, node.get_canonical_head())
    assert low_state.get_balance(low.header.coinbase) == 100
    result = node.import_block(high)
    assert [b.header for b in result.old_canonical_blocks] == [low.header]
    head_state = state_at(node.chaindb.db, node.get_canonical_head())
    assert head_state.get_balance(high.header.coinbase) == 100
    assert head_state.get_balance(low.header.coinbase) == 0
    assert not read_task(head_state, 1).is_open
