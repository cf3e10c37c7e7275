"""Genesis of a PoLe chain: dev accounts from the standard test mnemonic, registry predeployed.

Dev and non-dev chains get different genesis ``extra_data``, so the two are different chains
(a dev block could never be replayed on a production node that shares a genesis hash).
"""
from __future__ import annotations

import functools
from typing import Any, Dict, List

from eth.typing import AccountState
from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts import TASK_REGISTRY, load_artifact

from vm_hooks.params import (
    DEV_ACCOUNT_BALANCE,
    DEV_ACCOUNT_COUNT,
    DEV_MNEMONIC,
    GENESIS_BASE_FEE,
    GENESIS_GAS_LIMIT,
    GENESIS_TIMESTAMP,
    REGISTRY_ADDRESS,
)

DEV_GENESIS_EXTRA = b"PoLe devnet genesis"
GENESIS_EXTRA = b"PoLe genesis"


@functools.cache
def dev_accounts(count: int = DEV_ACCOUNT_COUNT) -> List[LocalAccount]:
    """Accounts m/44'/60'/0'/0/i of the test mnemonic: anvil's and Hardhat's addresses."""
    Account.enable_unaudited_hdwallet_features()
    return [
        Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
        for index in range(count)
    ]


def genesis_state() -> AccountState:
    state: Dict[bytes, Dict[str, Any]] = {
        bytes.fromhex(account.address[2:]): {
            "balance": DEV_ACCOUNT_BALANCE,
            "nonce": 0,
            "code": b"",
            "storage": {},
        }
        for account in dev_accounts()
    }
    state[REGISTRY_ADDRESS] = {
        "balance": 0,
        "nonce": 1,
        "code": load_artifact(TASK_REGISTRY).runtime_bytecode,
        "storage": {},
    }
    return state


def genesis_params(*, dev: bool) -> Dict[str, Any]:
    return {
        "difficulty": 0,
        "gas_limit": GENESIS_GAS_LIMIT,
        "timestamp": GENESIS_TIMESTAMP,
        "extra_data": DEV_GENESIS_EXTRA if dev else GENESIS_EXTRA,
        "base_fee_per_gas": GENESIS_BASE_FEE,
    }
