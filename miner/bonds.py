"""Miner bonds: the stake a miner holds in the task registry so data nodes admit it.

Announcements cost nothing to send, so without a stake throwaway keys could fill a release's
admitted slots. The registry (contracts/task_registry.vy) holds a bond per miner; a data node
admits announcements only from miners that hold at least MINER_BOND with no unbond request
pending (`is_bonded`). A bond comes back UNBOND_DELAY after `request_unbond`.

    ensure_bonded(w3, account)    bond MINER_BOND unless already bonded (`pole mine` on start)
    request_unbond(w3, account)   stop counting as bonded; returns when it can be withdrawn
    withdraw_bond(w3, account)    take the bond back once the delay is over

The miner reaches the registry through web3 only, like any user; every failure a user can
cause (an unfunded key, a refused call, a transaction that is never mined) is a `BondError`
whose message is one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from eth_account.signers.local import LocalAccount
from eth_utils import from_wei, to_checksum_address
from web3 import Web3

from miner.registry_client import RegistryTransactionError, registry_contract, send_registry_call
from vm_hooks.params import MINER_BOND, UNBOND_DELAY

#: How long a bond transaction may take to be mined before the miner gives up on it.
DEFAULT_RECEIPT_TIMEOUT_S = 120.0
#: Gas a bond call needs, with margin (the registry's bond() uses about 50k): checked against
#: the key's balance so an unfunded key hears so before anything is sent.
BOND_GAS_ALLOWANCE = 100_000


class BondError(RuntimeError):
    """A bond action cannot be done; the message (one line) says what and why."""


@dataclass(frozen=True)
class BondState:
    """What the registry holds for one miner."""

    amount: int  # wei
    unbond_at: int  # block time from which the bond can be withdrawn; 0: no request pending

    @property
    def bonded(self) -> bool:
        """The registry's own rule (`is_bonded`): enough bond and no unbond request pending."""
        return self.amount >= MINER_BOND and self.unbond_at == 0


def bond_state(w3: Web3, miner: bytes | str) -> BondState:
    """The bond the registry holds for `miner` at the node's head."""
    functions = registry_contract(w3).functions
    address = to_checksum_address(miner)
    return BondState(
        amount=int(functions.bonds(address).call()),
        unbond_at=int(functions.unbond_at(address).call()),
    )


def is_bonded(w3: Web3, miner: bytes | str) -> bool:
    """Whether a data node should admit `miner`'s announcements (the registry's view)."""
    return bool(registry_contract(w3).functions.is_bonded(to_checksum_address(miner)).call())


def format_ether(wei: int) -> str:
    """`1 ETH`, `0.25 ETH`: amounts as a person reads them."""
    text = f"{from_wei(wei, 'ether'):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} ETH"


def ensure_bonded(
    w3: Web3, account: LocalAccount, *, timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S
) -> Optional[bytes]:
    """Bond `account` for MINER_BOND unless it is bonded already (cancelling a pending unbond
    request tops the bond up the same way). Returns the transaction hash, or None if nothing
    was sent. An unfunded key raises BondError before anything is sent."""
    state = bond_state(w3, account.address)
    if state.bonded:
        return None
    missing = max(MINER_BOND - state.amount, 0) or 1  # bonding again cancels a request
    balance = int(w3.eth.get_balance(account.address))
    gas_cost = BOND_GAS_ALLOWANCE * int(w3.eth.gas_price)
    if balance < missing + gas_cost:
        raise BondError(
            f"{account.address} holds {format_ether(balance)}; bonding as a miner takes "
            f"{format_ether(missing)} plus gas: fund this key (on a devnet, `pole accounts` "
            "lists funded keys)"
        )
    receipt = _send(w3, account, registry_contract(w3).functions.bond(), value=missing, timeout_s=timeout_s)
    return bytes(receipt["transactionHash"])


def request_unbond(
    w3: Web3, account: LocalAccount, *, timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S
) -> int:
    """Ask for the bond back: the miner stops counting as bonded at once. Returns the block
    time from which `withdraw_bond` works (the request's block time + UNBOND_DELAY)."""
    call = registry_contract(w3).functions.request_unbond()
    _send(w3, account, call, value=0, timeout_s=timeout_s)
    return bond_state(w3, account.address).unbond_at


def withdraw_bond(
    w3: Web3, account: LocalAccount, *, timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S
) -> int:
    """Take back a bond whose unbond delay is over; returns the amount (wei)."""
    amount = bond_state(w3, account.address).amount
    _send(w3, account, registry_contract(w3).functions.withdraw_bond(), value=0, timeout_s=timeout_s)
    return amount


def describe(state: BondState) -> str:
    """One line on a miner's bond, for `pole mine` and its logs."""
    if state.bonded:
        return f"bonded with {format_ether(state.amount)}"
    if state.unbond_at:
        return (
            f"{format_ether(state.amount)} bonded, unbond requested (withdrawable from block "
            f"time {state.unbond_at}; the delay is {UNBOND_DELAY} s)"
        )
    if state.amount:
        return f"{format_ether(state.amount)} bonded, less than the {format_ether(MINER_BOND)} needed"
    return "not bonded"


def _send(w3: Web3, sender: LocalAccount, call: Any, *, value: int, timeout_s: float) -> dict:
    """A registry call from `sender`; any refusal becomes a one-line BondError."""
    try:
        return send_registry_call(w3, sender, call, value=value, timeout_s=timeout_s,
                                  what=call.fn_name)
    except RegistryTransactionError as error:
        raise BondError(str(error)) from None
