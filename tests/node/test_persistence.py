"""A node's chain outlives the process: clean restarts and kill -9 both resume at the head."""
from __future__ import annotations

from eth_account import Account

from . import NodeProcess


def transfer(w3, to: str, value: int) -> int:
    """Send from dev account 0 (automine) and return the block it landed in."""
    tx_hash = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": to, "value": value})
    return w3.eth.get_transaction_receipt(tx_hash).blockNumber


def test_restart_resumes_at_the_stored_head(tmp_path):
    recipient = Account.create().address
    node = NodeProcess(tmp_path).start()
    w3 = node.web3()
    transfer(w3, recipient, 111)
    transfer(w3, recipient, 222)
    head = w3.eth.get_block("latest")
    sender_balance = w3.eth.get_balance(w3.eth.accounts[0])
    assert node.stop() == 0

    node = NodeProcess(tmp_path).start()
    try:
        w3 = node.web3()
        assert "head #%d" % head.number in node.banner[-1]
        assert w3.eth.get_block("latest").hash == head.hash
        assert w3.eth.get_balance(recipient) == 333
        assert w3.eth.get_balance(w3.eth.accounts[0]) == sender_balance
        assert transfer(w3, recipient, 1) == head.number + 1  # and the chain goes on
    finally:
        node.stop()


def test_kill_9_keeps_every_committed_block(tmp_path):
    recipient = Account.create().address
    node = NodeProcess(tmp_path).start()
    w3 = node.web3()
    blocks = [transfer(w3, recipient, 10) for _ in range(3)]
    head = w3.eth.get_block("latest")
    node.kill()  # no shutdown code runs, the database is never closed

    node = NodeProcess(tmp_path).start()
    try:
        w3 = node.web3()
        assert w3.eth.block_number == blocks[-1] == head.number
        assert w3.eth.get_block("latest").hash == head.hash
        assert w3.eth.get_balance(recipient) == 30
    finally:
        node.stop()


def test_two_nodes_on_one_datadir_are_refused(tmp_path):
    first = NodeProcess(tmp_path).start()
    try:
        second = NodeProcess(tmp_path)
        try:
            second.start()
        except RuntimeError as error:
            assert "cannot open the chain" in str(error)
        else:
            second.stop()
            raise AssertionError("a second node opened a datadir already in use")
    finally:
        first.stop()
