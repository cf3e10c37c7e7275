"""The mempool on a real dev chain: admission checks, nonce order, replacement, pruning."""
from __future__ import annotations

import threading

import pytest
from eth_account import Account
from eth_utils import to_canonical_address

from pole_chain.chain.block_production import produce_dev_block
from pole_chain.chain.opening import open_chain
from vm_hooks.params import CHAIN_ID
from pole_chain.chain.database import open_database
from vm_hooks.genesis import dev_accounts
from pole_chain.node.mempool import (
    ACCOUNT_QUEUE,
    MAX_TRANSACTION_SIZE,
    QUEUE_LIFETIME,
    Mempool,
    PoolLimits,
    TransactionRejected,
)

GWEI = 10**9
ACCOUNTS = dev_accounts()
RECIPIENT = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
def chain():
    return open_chain(open_database(None), dev=True)


def head_state(chain):
    return chain.get_vm(chain.get_canonical_head()).state


def base_fee(chain):
    return chain.create_header_from_parent(chain.get_canonical_head()).base_fee_per_gas


def signed(chain, account=ACCOUNTS[0], *, nonce=0, tip=GWEI, fee_cap=3 * GWEI, **fields):
    tx = {
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "to": RECIPIENT,
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": fee_cap,
        "maxPriorityFeePerGas": tip,
        **fields,
    }
    raw = bytes(account.sign_transaction(tx).raw_transaction)
    return chain.get_vm().get_transaction_builder().decode(raw)


def add(pool, chain, tx):
    limit = chain.create_header_from_parent(chain.get_canonical_head()).gas_limit
    return pool.add(tx, head_state(chain), block_gas_limit=limit, base_fee=base_fee(chain))


def rejection(pool, chain, tx) -> str:
    with pytest.raises(TransactionRejected) as caught:
        add(pool, chain, tx)
    return str(caught.value)


def test_nonce_gap_waits_until_filled(chain):
    pool = Mempool(CHAIN_ID)
    second, first, fourth = (signed(chain, nonce=n) for n in (1, 0, 3))
    add(pool, chain, second)
    assert pool.executable(head_state(chain), base_fee(chain)) == []
    add(pool, chain, first)
    add(pool, chain, fourth)
    ready = pool.executable(head_state(chain), base_fee(chain))
    assert [tx.nonce for tx in ready] == [0, 1]  # nonce 3 waits for 2
    assert pool.pending_nonce(to_canonical_address(ACCOUNTS[0].address), 0) == 2
    assert len(pool) == 3


def test_senders_ordered_by_tip_then_arrival_without_breaking_nonce_order(chain):
    pool = Mempool(CHAIN_ID)
    low_a0 = signed(chain, ACCOUNTS[0], nonce=0, tip=1 * GWEI)
    rich_a1 = signed(chain, ACCOUNTS[0], nonce=1, tip=2 * GWEI)
    mid_b = signed(chain, ACCOUNTS[1], nonce=0, tip=int(1.5 * GWEI))
    early_c = signed(chain, ACCOUNTS[2], nonce=0, tip=1 * GWEI)
    late_d = signed(chain, ACCOUNTS[3], nonce=0, tip=1 * GWEI)
    for tx in (early_c, low_a0, rich_a1, mid_b, late_d):
        add(pool, chain, tx)
    order = pool.executable(head_state(chain), base_fee(chain))
    # b pays most up front; a's rich nonce 1 only after a's nonce 0, which arrived after c.
    assert [tx.hash for tx in order] == [
        mid_b.hash, early_c.hash, low_a0.hash, rich_a1.hash, late_d.hash
    ]


def test_replacement_needs_ten_percent_on_both_fee_caps(chain):
    pool = Mempool(CHAIN_ID)
    original = signed(chain, nonce=0, tip=GWEI, fee_cap=3 * GWEI)
    add(pool, chain, original)

    too_little = signed(chain, nonce=0, tip=int(1.05 * GWEI), fee_cap=int(3.3 * GWEI))
    assert "replacement transaction underpriced" in rejection(pool, chain, too_little)
    tip_only = signed(chain, nonce=0, tip=int(1.2 * GWEI), fee_cap=3 * GWEI)
    assert "replacement transaction underpriced" in rejection(pool, chain, tip_only)

    better = signed(chain, nonce=0, tip=int(1.1 * GWEI), fee_cap=int(3.3 * GWEI))
    assert add(pool, chain, better).hash == original.hash
    assert original.hash not in pool and better.hash in pool
    assert len(pool) == 1


def test_duplicate_is_already_known(chain):
    pool = Mempool(CHAIN_ID)
    tx = signed(chain)
    add(pool, chain, tx)
    assert "already known" in rejection(pool, chain, tx)


def test_foreign_and_unprotected_chain_ids_are_refused(chain):
    pool = Mempool(CHAIN_ID)
    foreign = signed(chain, chainId=1)
    assert "invalid chain id: transaction signed for chain 1" in rejection(pool, chain, foreign)
    unprotected_raw = ACCOUNTS[0].sign_transaction(
        {"nonce": 0, "to": RECIPIENT, "value": 1, "gas": 21_000, "gasPrice": 3 * GWEI}
    ).raw_transaction
    unprotected = chain.get_vm().get_transaction_builder().decode(bytes(unprotected_raw))
    assert "replay-protected" in rejection(pool, chain, unprotected)


def test_legacy_eip155_transaction_is_accepted(chain):
    pool = Mempool(CHAIN_ID)
    raw = ACCOUNTS[0].sign_transaction(
        {"chainId": CHAIN_ID, "nonce": 0, "to": RECIPIENT, "value": 1, "gas": 21_000,
         "gasPrice": 3 * GWEI}
    ).raw_transaction
    add(pool, chain, chain.get_vm().get_transaction_builder().decode(bytes(raw)))
    assert len(pool) == 1


def test_nonce_too_low_after_a_block(chain):
    pool = Mempool(CHAIN_ID)
    produce_dev_block(chain, [signed(chain, nonce=0)])
    stale = signed(chain, nonce=0, value=2)
    assert "nonce too low: next nonce 1, tx nonce 0" in rejection(pool, chain, stale)


def test_insufficient_funds(chain):
    pool = Mempool(CHAIN_ID)
    pauper = Account.create()
    message = rejection(pool, chain, signed(chain, pauper))
    assert "insufficient funds for gas * price + value" in message
    assert "have 0" in message


def test_gas_limits(chain):
    pool = Mempool(CHAIN_ID)
    assert "intrinsic gas too low: gas 20000, minimum needed 21000" in rejection(
        pool, chain, signed(chain, gas=20_000)
    )
    assert "exceeds block gas limit" in rejection(pool, chain, signed(chain, gas=40_000_000))


def test_fee_cap_below_base_fee_and_tip_above_cap(chain):
    pool = Mempool(CHAIN_ID)
    assert "max fee per gas less than block base fee" in rejection(
        pool, chain, signed(chain, tip=1, fee_cap=10)
    )
    assert "max priority fee per gas higher than max fee per gas" in rejection(
        pool, chain, signed(chain, tip=4 * GWEI, fee_cap=3 * GWEI)
    )


def test_oversized_transaction(chain):
    pool = Mempool(CHAIN_ID)
    huge = signed(chain, data=b"\x01" * (MAX_TRANSACTION_SIZE + 1), gas=3_000_000)
    assert "oversized data" in rejection(pool, chain, huge)


def test_bad_signature(chain):
    pool = Mempool(CHAIN_ID)
    good = signed(chain)
    forged = good.copy(s=0)  # s = 0 is never a valid signature value
    assert "invalid sender signature" in rejection(pool, chain, forged)


def test_prune_drops_what_a_block_included(chain):
    pool = Mempool(CHAIN_ID)
    first, second = signed(chain, nonce=0), signed(chain, nonce=1)
    add(pool, chain, first)
    add(pool, chain, second)
    produced = produce_dev_block(chain, [first])
    assert produced.included == [first]
    dropped = pool.prune(head_state(chain))
    assert [tx.hash for tx in dropped] == [first.hash]
    assert [tx.hash for tx in pool.executable(head_state(chain), base_fee(chain))] == [
        second.hash
    ]


def test_concurrent_admission_is_consistent(chain):
    pool = Mempool(CHAIN_ID)
    transactions = [signed(chain, account, nonce=n) for account in ACCOUNTS for n in range(5)]
    limit = chain.create_header_from_parent(chain.get_canonical_head()).gas_limit
    states = [head_state(chain) for _ in range(4)]  # one state object per thread

    def admit(index):
        for tx in transactions[index::4]:
            pool.add(tx, states[index], block_gas_limit=limit)

    threads = [threading.Thread(target=admit, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pool) == len(transactions)
    ready = pool.executable(head_state(chain))
    assert len(ready) == len(transactions)
    for account in ACCOUNTS:
        sender = to_canonical_address(account.address)
        assert [tx.nonce for tx in ready if tx.sender == sender] == list(range(5))


# -- limits (issue #7: a full queue must never lock its account out) -------------------


def sender(account=ACCOUNTS[0]):
    return to_canonical_address(account.address)


def test_the_gap_filler_is_admitted_above_a_full_queue(chain):
    pool = Mempool(CHAIN_ID)
    for nonce in range(1, ACCOUNT_QUEUE + 1):
        add(pool, chain, signed(chain, nonce=nonce))
    message = rejection(pool, chain, signed(chain, nonce=ACCOUNT_QUEUE + 1))
    assert f"queue is full: {ACCOUNT_QUEUE} transactions wait above a nonce gap" in message
    assert f"limit ACCOUNT_QUEUE {ACCOUNT_QUEUE}" in message and "send nonce 0 first" in message
    add(pool, chain, signed(chain, nonce=0, tip=1, fee_cap=3 * GWEI))  # any fee will do
    ready = pool.executable(head_state(chain), base_fee(chain))
    assert [tx.nonce for tx in ready] == list(range(ACCOUNT_QUEUE + 1))
    assert pool.counts() == (ACCOUNT_QUEUE + 1, 0)


def test_a_gap_filler_takes_the_top_queued_slot_when_the_pool_is_full(chain):
    pool = Mempool(CHAIN_ID, limits=PoolLimits(global_slots=2))
    for nonce in (0, 1):
        add(pool, chain, signed(chain, ACCOUNTS[1], nonce=nonce))
    for nonce in (2, 3):
        add(pool, chain, signed(chain, nonce=nonce))
    top = pool.transactions()[-1]
    add(pool, chain, signed(chain, nonce=0))  # fills part of the gap: executable
    assert top.hash not in pool and len(pool) == 4
    add(pool, chain, signed(chain, nonce=1))  # the rest of it; nonce 2 makes room now
    assert pool.pending_nonce(sender(), 0) == 2 and len(pool) == 4
    assert pool.counts() == (4, 0)


def test_a_lower_queued_nonce_replaces_the_top_of_a_full_account_queue(chain):
    pool = Mempool(CHAIN_ID, limits=PoolLimits(account_queue=2))
    for nonce in (5, 6):
        add(pool, chain, signed(chain, nonce=nonce))
    add(pool, chain, signed(chain, nonce=2))
    assert sorted(tx.nonce for tx in pool.transactions()) == [2, 5]


def test_global_slots_keep_account_slots_for_each_account(chain):
    pool = Mempool(CHAIN_ID, limits=PoolLimits(global_slots=3, account_slots=1))
    first_three = [signed(chain, nonce=n) for n in range(3)]
    for tx in first_three:
        add(pool, chain, tx)
    add(pool, chain, signed(chain, ACCOUNTS[1], nonce=0))  # takes account 0's top slot
    assert first_three[2].hash not in pool and len(pool) == 3
    message = rejection(pool, chain, signed(chain, ACCOUNTS[1], nonce=1))
    assert "transaction pool is full: 3 executable transactions (limit GLOBAL_SLOTS 3)" in message
    assert "already has 1 (each account keeps ACCOUNT_SLOTS 1)" in message


def test_global_queue_is_shared_out_by_taking_from_the_longest_queue(chain):
    pool = Mempool(CHAIN_ID, limits=PoolLimits(global_queue=3))
    for nonce in (5, 6):
        add(pool, chain, signed(chain, ACCOUNTS[0], nonce=nonce))
    add(pool, chain, signed(chain, ACCOUNTS[1], nonce=5))
    add(pool, chain, signed(chain, ACCOUNTS[2], nonce=5))  # account 0's nonce 6 makes room
    assert sorted(tx.nonce for tx in pool.transactions() if tx.sender == sender()) == [5]
    message = rejection(pool, chain, signed(chain, ACCOUNTS[3], nonce=5))
    assert "transaction pool queue is full: 3 transactions wait above a nonce gap" in message
    assert "limit GLOBAL_QUEUE 3" in message


def test_queued_transactions_expire_after_their_lifetime(chain):
    now = [1000.0]
    pool = Mempool(CHAIN_ID, clock=lambda: now[0])
    executable, queued = signed(chain, nonce=0), signed(chain, nonce=5)
    add(pool, chain, executable)
    add(pool, chain, queued)
    now[0] += QUEUE_LIFETIME - 1
    assert pool.expire() == []
    now[0] += 1
    assert [tx.hash for tx in pool.expire()] == [queued.hash]
    assert executable.hash in pool  # executable transactions never expire
    add(pool, chain, signed(chain, nonce=5))  # the slot is free again


def test_a_long_run_of_consecutive_nonces_is_admitted(chain):
    pool = Mempool(CHAIN_ID)
    for nonce in range(2 * ACCOUNT_QUEUE):  # once refused as "nonce too high"
        add(pool, chain, signed(chain, nonce=nonce))
    assert pool.counts() == (2 * ACCOUNT_QUEUE, 0)
    assert len(pool.executable(head_state(chain), base_fee(chain))) == 2 * ACCOUNT_QUEUE
