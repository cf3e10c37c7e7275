"""The task registry as a web3 user reaches it: the contract object and one way to transact.

Miners (bonds) and data nodes (posting tasks) both send registry calls from their own keys
and want the same things from it: the receipt of a mined, successful transaction, and every
failure a user can cause (a revert, an unfunded key, a node that refuses, a transaction
never mined) as one line that names what was being done.
"""
from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import encode_hex, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError

from contracts import TASK_REGISTRY, load_artifact
from miner.pole_module import error_message
from vm_hooks.params import REGISTRY_ADDRESS


class RegistryTransactionError(RuntimeError):
    """A registry transaction was refused, reverted or never mined; the message is one line."""


def registry_contract(w3: Web3) -> Contract:
    """The task registry at its genesis address, with its ABI."""
    return w3.eth.contract(
        address=to_checksum_address(REGISTRY_ADDRESS), abi=load_artifact(TASK_REGISTRY).abi
    )


def send_registry_call(
    w3: Web3, sender: LocalAccount, call: Any, *, value: int, timeout_s: float, what: str
) -> dict:
    """Sign and send `call` from `sender`; the receipt of the mined, successful transaction.
    `what` names the action in errors ("the task", "withdraw_bond")."""
    try:
        tx = call.build_transaction(
            {
                "from": sender.address,
                "value": value,
                "chainId": w3.eth.chain_id,
                "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
            }
        )
        tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    except ContractLogicError as error:
        reason = (error.message or str(error)).removeprefix("execution reverted: ")
        raise RegistryTransactionError(f"the registry refuses {what}: {reason}") from None
    except Web3RPCError as error:  # e.g. not enough ether for value and gas
        raise RegistryTransactionError(
            f"the node refused {what} from {sender.address}: {error_message(error)}"
        ) from None
    try:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout_s, poll_latency=0.25)
    except TimeExhausted:
        raise RegistryTransactionError(
            f"{what} transaction {encode_hex(tx_hash)} not mined within {timeout_s:.0f} s (is "
            "the node producing blocks? a non-dev node needs --mine-idle)"
        ) from None
    if receipt["status"] != 1:
        raise RegistryTransactionError(f"{what} transaction {encode_hex(tx_hash)} reverted")
    return receipt
