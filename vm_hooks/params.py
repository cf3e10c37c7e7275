"""Chain-wide constants: the single place every other module takes them from."""
from typing import Final

from eth.constants import SYSTEM_ADDRESS as _PY_EVM_SYSTEM_ADDRESS
from eth_typing import Address
from eth_utils import to_canonical_address

#: "POLE" in ASCII. Transactions signed for any other chain id are refused.
CHAIN_ID: Final = 0x504F4C45

#: The task registry lives here from genesis on ("PoLe" in the last four bytes).
REGISTRY_ADDRESS: Final[Address] = Address(
    to_canonical_address("0x00000000000000000000000000000000506f4c45")
)

#: Sender of the settlement system call (the same address EIP-4788/2935 system calls use).
SYSTEM_ADDRESS: Final[Address] = _PY_EVM_SYSTEM_ADDRESS

#: The mnemonic anvil and Hardhat use, so dev accounts have the addresses users know.
DEV_MNEMONIC: Final = "test test test test test test test test test test test junk"
DEV_ACCOUNT_COUNT: Final = 10
DEV_ACCOUNT_BALANCE: Final = 10_000 * 10**18

GENESIS_GAS_LIMIT: Final = 30_000_000
GENESIS_BASE_FEE: Final = 1_000_000_000
#: Fixed so every node derives the same genesis hash.
GENESIS_TIMESTAMP: Final = 1_735_689_600  # 2025-01-01T00:00:00Z


#: Longest time limit a task may have (the registry's MAX_TIME_LIMIT; a test pins them equal).
#: A task holds the best-task anchor for at most this long (docs/PROTOCOL.md, "Task anchor").
MAX_TASK_TIME_LIMIT: Final = 86_400

#: A PoLe block's score (difficulty) is its test accuracy in bps times this unit. Between a task's
#: anchor and its deadline two branches differ by fewer than MAX_TASK_TIME_LIMIT + 15 idle
#: blocks (score 1 each), far below one unit, so the better test accuracy always has the
#: higher chain score (docs/PROTOCOL.md, "Task anchor").
POLE_SCORE_UNIT: Final = 2**20

#: Bond a miner holds in the registry for data nodes to admit its announcements, and how long
#: after an unbond request it stays locked (the registry's MINER_BOND and UNBOND_DELAY).
MINER_BOND: Final = 10**18
UNBOND_DELAY: Final = 86_400
