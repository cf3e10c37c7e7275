"""Blocks replay to the same state on a fresh node; settlement runs only as a system call."""
import pytest
from eth_utils import keccak

from pole_chain.chain.block_production import produce_dev_block, produce_idle_block, produce_pole_block
from vm_hooks.params import REGISTRY_ADDRESS
from vm_hooks.genesis import dev_accounts
from vm_hooks.registry_calls import TaskResult, TaskStatus, encode_call, read_task, view
from vm_hooks.vm import BadSenderSignatureError, WrongChainIdError

from .conftest import (
    address_of, balance_of, head_state, miner_key, new_chain, nonce_of, post_task_tx, replay, sign,
)

MINER_KEY = miner_key(b"settlement")
MINER = address_of(MINER_KEY)
POSTER = bytes.fromhex(dev_accounts()[0].address[2:])


def test_mixed_blocks_replay_to_the_same_state_roots():
    chain = new_chain()
    blocks = [produce_idle_block(chain, [post_task_tx(chain, reward=10**18, time_limit=600)]).block]
    blocks.append(
        produce_pole_block(
            chain, [sign(chain, {"to": MINER, "value": 5, "nonce": nonce_of(chain, 0)})],
            signer=MINER_KEY, task_id=1, model_commitment=keccak(b"m"), train_bps=8_000,
            test_bps=7_000, release_digest=keccak(b"r"),
        ).block
    )
    blocks.append(produce_idle_block(chain, []).block)
    fresh = replay(blocks)
    assert [fresh.get_canonical_block_by_number(n).header.state_root for n in (1, 2, 3)] == [
        b.header.state_root for b in blocks
    ]
    assert fresh.get_canonical_head() == chain.get_canonical_head()


def test_pole_block_pays_the_escrow_and_records_the_result():
    chain = new_chain()
    produce_idle_block(chain, [post_task_tx(chain, reward=3 * 10**18, time_limit=600)])
    assert balance_of(chain, REGISTRY_ADDRESS) == 3 * 10**18
    block = produce_pole_block(
        chain, [], signer=MINER_KEY, task_id=1, model_commitment=keccak(b"model"),
        train_bps=9_100, test_bps=8_900, release_digest=keccak(b"release"),
    ).block
    state = head_state(chain)
    assert state.get_balance(MINER) == 3 * 10**18
    assert state.get_balance(REGISTRY_ADDRESS) == 0
    settled = read_task(state, 1)
    assert settled.status is TaskStatus.SETTLED
    assert settled.result == TaskResult(
        winner=MINER, model_commitment=keccak(b"model"), train_bps=9_100, test_bps=8_900,
        release_digest=keccak(b"release")[:24] + bytes(8), block_number=block.number,
    )


def test_overdue_task_expires_and_refunds_the_poster_in_an_idle_block():
    chain = new_chain()
    produce_idle_block(chain, [post_task_tx(chain, reward=10**18, time_limit=60)])
    before = balance_of(chain, POSTER)
    deadline = read_task(head_state(chain), 1).deadline
    produce_idle_block(chain, [], timestamp=deadline + 1)
    state = head_state(chain)
    assert read_task(state, 1).status is TaskStatus.EXPIRED
    assert state.get_balance(POSTER) == before + 10**18
    assert view(state, "best_task") == (0,)


@pytest.mark.parametrize("function, args", [("settle", [1, MINER, bytes(32), 1, 1, bytes(32)]), ("expire_overdue", [2**40])])
def test_settle_and_expire_are_refused_from_a_normal_account(function, args):
    chain = new_chain(dev=True)
    produce_dev_block(chain, [post_task_tx(chain, reward=10**18, time_limit=60)])
    call = sign(chain, {"to": REGISTRY_ADDRESS, "data": encode_call(function, args), "nonce": nonce_of(chain, 1)}, account_index=1)
    block = produce_dev_block(chain, [call]).block
    (receipt,) = block.get_receipts(chain.chaindb)
    assert receipt.state_root == b""  # reverted ("only system")
    assert read_task(head_state(chain), 1).is_open
    assert balance_of(chain, REGISTRY_ADDRESS) == 10**18


def test_a_foreign_chain_id_transaction_is_refused():
    chain = new_chain(dev=True)
    for chain_id in (1, 31337):
        foreign = sign(chain, {"to": MINER, "value": 1, "nonce": 0, "chainId": chain_id})
        vm = chain.get_vm()
        with pytest.raises(WrongChainIdError, match=f"chain id {chain_id} is not this chain's"):
            vm.apply_transaction(vm.get_header(), foreign)
        produced = produce_dev_block(chain, [foreign])
        assert produced.included == [] and "chain id" in produced.rejected[0][1]
    assert balance_of(chain, MINER) == 0


def test_a_block_whose_transaction_signature_recovers_no_sender_is_invalid():
    """eth_keys' BadSignature would escape py-evm as if the node had a bug; it is the block's."""
    from eth_keys.exceptions import BadSignature

    chain = new_chain(dev=True)
    block = produce_dev_block(chain, [sign(chain, {"to": MINER, "value": 1, "nonce": 0})]).block
    (tx,) = block.transactions
    for r in range(1, 100):
        forged = tx.copy(r=r)
        try:
            forged.sender
        except BadSignature:
            break
    else:
        pytest.fail("no r without a recoverable sender")
    bad = block.copy(transactions=[forged])
    with pytest.raises(BadSenderSignatureError):
        new_chain(dev=True).import_block(bad)


def test_restart_on_the_data_directory_keeps_head_and_balances(tmp_path):
    chain = new_chain(dev=True, datadir=tmp_path)
    for nonce in range(3):
        produce_dev_block(chain, [sign(chain, {"to": MINER, "value": 7, "nonce": nonce})])
    head = chain.get_canonical_head()
    chain.chaindb.db.close()
    reopened = new_chain(dev=True, datadir=tmp_path)
    assert reopened.get_canonical_head() == head
    assert balance_of(reopened, MINER) == 21
    produce_dev_block(reopened, [sign(reopened, {"to": MINER, "value": 1, "nonce": 3})])
    assert reopened.get_canonical_head().block_number == 4
    reopened.chaindb.db.close()


def test_opening_a_dev_datadir_without_dev_is_refused(tmp_path):
    from pole_chain.chain.opening import WrongGenesisError, open_chain

    from pole_chain.chain.database import open_database

    new_chain(dev=True, datadir=tmp_path).chaindb.db.close()
    db = open_database(tmp_path)
    with pytest.raises(WrongGenesisError, match="holds a dev chain"):
        open_chain(db, dev=False)
    db.close()


def test_rewind_restores_an_ancestor_and_new_blocks_win():
    chain = new_chain(dev=True)
    base = produce_dev_block(chain, []).block
    reverted = produce_dev_block(chain, [sign(chain, {"to": MINER, "value": 9, "nonce": 0})]).block
    chain.rewind_to(base.hash)
    assert chain.get_canonical_head() == base.header
    assert balance_of(chain, MINER) == 0
    tx_hash = reverted.transactions[0].hash
    with pytest.raises(Exception):
        chain.chaindb.get_transaction_index(tx_hash)
    replacement = produce_dev_block(chain, []).block
    assert chain.get_canonical_head() == replacement.header
    assert chain.get_canonical_block_header_by_number(replacement.number) == replacement.header


def test_withdrawals_are_refused_they_would_mint_ether():
    from eth.vm.forks.shanghai.withdrawals import Withdrawal
    from eth_utils import ValidationError

    chain = new_chain(dev=True)
    withdrawal = Withdrawal(index=0, validator_index=0, address=MINER, amount=10**18)
    vm = chain.get_vm()
    with pytest.raises(ValidationError, match="no withdrawals"):
        vm.apply_all_withdrawals([withdrawal])
    header = chain.get_canonical_head()
    produced = produce_dev_block(chain, [])
    forged = produced.block.header.copy(withdrawals_root=keccak(b"withdrawals"))
    with pytest.raises(ValidationError, match="no withdrawals"):
        vm.validate_header(forged, header)
