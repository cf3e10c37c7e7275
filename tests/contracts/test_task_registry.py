"""Behaviour of the task registry (contracts/task_registry.vy) on a real py-evm chain."""

from __future__ import annotations

import pytest
import vyper
from eth_utils import to_bytes

from .conftest import BLOCK_INTERVAL, ETHER, REGISTRY_ADDRESS, RegistryChain, encode_call

MODEL_SPEC = b"\x11" * 32
DATASET = b"\x22" * 32
TEST_SET = b"\x33" * 32
COMMITMENT = b"\x44" * 32
RELEASE = b"\x55" * 32
MAX_OPEN_TASKS = 64
STATUS_OPEN, STATUS_SETTLED, STATUS_EXPIRED = 1, 2, 3

# A wallet whose receive hook needs more gas than a registry payment forwards, so every
# payment to it fails; it can still claim what it is owed with a well-funded withdraw().
GAS_HUNGRY_WALLET = """
#pragma version 0.4.3

interface Registry:
    def post_task(
        model_spec: bytes32, dataset_digest: bytes32, test_set_commitment: bytes32,
        min_train_bps: uint256, time_limit: uint256, solutions_wanted: uint256,
    ) -> uint256: payable
    def withdraw(): nonpayable

@external
@payable
def post_task(registry: address, time_limit: uint256) -> uint256:
    return extcall Registry(registry).post_task(
        empty(bytes32), empty(bytes32), empty(bytes32), 0, time_limit, 1, value=msg.value
    )

@external
def claim(registry: address):
    extcall Registry(registry).withdraw()

@external
@payable
def __default__():
    assert msg.gas > 100000, "needs more gas"
"""


@pytest.fixture(scope="module")
def wallet_code() -> tuple[list, bytes]:
    out = vyper.compile_code(GAS_HUNGRY_WALLET, output_formats=["abi", "bytecode"])
    return out["abi"], to_bytes(hexstr=out["bytecode"])


def post(
    registry: RegistryChain,
    poster_index: int = 0,
    reward: int = ETHER,
    time_limit: int = 3600,
    min_train_bps: int = 9000,
    solutions_wanted: int = 1,
):
    return registry.transact(
        registry.accounts[poster_index],
        "post_task",
        MODEL_SPEC,
        DATASET,
        TEST_SET,
        min_train_bps,
        time_limit,
        solutions_wanted,
        value=reward,
    )


def post_ok(registry: RegistryChain, **kwargs) -> int:
    outcome = post(registry, **kwargs)
    assert not outcome.reverted, outcome.revert_reason
    return registry.call("task_count")


def settle(registry: RegistryChain, task_id: int, winner: str, train_bps=9100, test_bps=9200):
    return registry.system_call(
        "settle", task_id, winner, COMMITMENT, train_bps, test_bps, RELEASE
    )


# -- genesis --


def test_registry_starts_empty_at_its_fixed_address(registry):
    assert registry.code(REGISTRY_ADDRESS) == registry.artifact.runtime_bytecode
    assert registry.call("task_count") == 0
    assert registry.call("best_task") == 0
    assert registry.call("open_task_ids") == []
    assert registry.call("get_task", 1)["status"] == 0
    assert registry.balance(REGISTRY_ADDRESS) == 0


# -- posting --


def test_post_task_escrows_the_reward_and_records_the_task(registry):
    poster = registry.accounts[0].address
    poster_before = registry.balance(poster)
    posted_at = registry.pending_timestamp

    outcome = post(
        registry, reward=3 * ETHER, time_limit=600, min_train_bps=8500, solutions_wanted=2
    )

    assert not outcome.reverted
    assert registry.balance(REGISTRY_ADDRESS) == 3 * ETHER
    assert registry.balance(poster) == poster_before - 3 * ETHER - outcome.fee
    assert registry.call("task_count") == 1
    assert registry.call("get_task", 1) == {
        "poster": poster,
        "reward": 3 * ETHER,
        "model_spec": MODEL_SPEC,
        "dataset_digest": DATASET,
        "test_set_commitment": TEST_SET,
        "min_train_bps": 8500,
        "time_limit": 600,
        "solutions_wanted": 2,
        "posted_at": posted_at,
        "deadline": posted_at + 600,
        "status": STATUS_OPEN,
    }
    assert [(e.name, e.address, e.args) for e in outcome.events] == [
        (
            "TaskPosted",
            REGISTRY_ADDRESS,
            {"task_id": 1, "poster": poster, "reward": 3 * ETHER, "deadline": posted_at + 600},
        )
    ]
    assert registry.call("open_task_ids") == [1]
    assert registry.call("best_task") == 1
    assert post_ok(registry) == 2


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"reward": 0}, "no reward"),
        ({"time_limit": 0}, "zero time limit"),
        ({"time_limit": 86400 + 1}, "time limit too long"),
        ({"min_train_bps": 10001}, "min_train_bps above 10000"),
        ({"solutions_wanted": 0}, "no solutions wanted"),
    ],
)
def test_post_task_rejects_invalid_tasks(registry, overrides, reason):
    poster = registry.accounts[0].address
    before = registry.balance(poster)

    outcome = post(registry, **overrides)

    assert outcome.reverted
    assert outcome.revert_reason == reason
    assert registry.balance(poster) == before - outcome.fee
    assert registry.call("task_count") == 0
    assert registry.balance(REGISTRY_ADDRESS) == 0


def test_post_task_accepts_the_boundary_values(registry):
    task_id = post_ok(registry, reward=1, time_limit=86400, min_train_bps=10000)
    assert registry.call("get_task", task_id)["status"] == STATUS_OPEN


def test_plain_ether_transfers_are_rejected(registry):
    outcome = registry.send(registry.accounts[0], REGISTRY_ADDRESS, value=ETHER)
    assert outcome.reverted
    assert registry.balance(REGISTRY_ADDRESS) == 0


def test_registry_full_at_max_open_tasks(registry):
    for _ in range(MAX_OPEN_TASKS):
        post_ok(registry, reward=ETHER, time_limit=100)
    assert len(registry.call("open_task_ids")) == MAX_OPEN_TASKS

    outcome = post(registry)
    assert outcome.reverted
    assert outcome.revert_reason == "registry full"

    assert not settle(registry, 1, registry.accounts[9].address).reverted
    assert post_ok(registry, time_limit=100) == MAX_OPEN_TASKS + 1

    # Expiring a full registry stays far inside the 30M gas of a system call.
    registry.warp(1000)
    outcome = registry.system_call("expire_overdue", registry.pending_timestamp)
    assert not outcome.reverted
    assert [e.name for e in outcome.events] == ["TaskExpired"] * MAX_OPEN_TASKS
    assert registry.call("open_task_ids") == []
    assert registry.balance(REGISTRY_ADDRESS) == 0
    assert outcome.gas_used < 3_000_000


# -- best task --


def test_best_task_is_highest_reward_per_second(registry):
    post_ok(registry, reward=1 * ETHER, time_limit=100)  # 0.010 ether/s
    post_ok(registry, reward=3 * ETHER, time_limit=200)  # 0.015 ether/s
    post_ok(registry, reward=1 * ETHER, time_limit=50)  # 0.020 ether/s
    post_ok(registry, reward=5 * ETHER, time_limit=1000)  # 0.005 ether/s
    assert registry.call("best_task") == 3


def test_best_task_breaks_ties_to_lowest_id_whatever_the_array_order(registry):
    post_ok(registry, reward=1 * ETHER, time_limit=100)  # 1: low value
    post_ok(registry, reward=2 * ETHER, time_limit=100)  # 2: high
    post_ok(registry, reward=4 * ETHER, time_limit=200)  # 3: high, same value as 2
    post_ok(registry, reward=2 * ETHER, time_limit=100)  # 4: high, same value as 2
    assert registry.call("best_task") == 2

    settle(registry, 2, registry.accounts[9].address)

    # swap-and-pop moved id 4 in front of id 3; the answer must not follow it
    assert registry.call("open_task_ids") == [1, 4, 3]
    assert registry.call("best_task") == 3


def test_best_task_compares_exactly_without_rounding(registry):
    # 1 wei/3 s vs 1 wei/4 s would both round to 0 with integer division.
    post_ok(registry, reward=1, time_limit=4)
    post_ok(registry, reward=1, time_limit=3)
    assert registry.call("best_task") == 2


# -- settlement --


def test_settle_pays_the_winner_and_records_the_result(registry):
    post_ok(registry, reward=2 * ETHER)
    winner = registry.accounts[5].address
    winner_before = registry.balance(winner)
    block_number = registry.pending_block_number

    outcome = settle(registry, 1, winner, train_bps=9100, test_bps=9200)

    assert not outcome.reverted
    assert registry.balance(winner) == winner_before + 2 * ETHER
    assert registry.balance(REGISTRY_ADDRESS) == 0
    assert registry.call("get_result", 1) == {
        "winner": winner,
        "model_commitment": COMMITMENT,
        "train_bps": 9100,
        "test_bps": 9200,
        "release_digest": RELEASE,
        "block_number": block_number,
    }
    assert registry.call("get_task", 1)["status"] == STATUS_SETTLED
    assert registry.call("open_task_ids") == []
    assert registry.call("best_task") == 0
    assert [(e.name, e.args) for e in outcome.events] == [
        (
            "TaskSettled",
            {
                "task_id": 1,
                "winner": winner,
                "reward": 2 * ETHER,
                "model_commitment": COMMITMENT,
                "test_bps": 9200,
            },
        )
    ]


@pytest.mark.parametrize("function", ["settle", "expire_overdue", "note_best_task"])
def test_system_functions_reject_normal_accounts(registry, function):
    post_ok(registry, time_limit=1)
    registry.warp(100)
    args = {
        "settle": (1, registry.accounts[1].address, COMMITMENT, 9100, 9200, RELEASE),
        "expire_overdue": (registry.pending_timestamp,),
        "note_best_task": (registry.pending_block_number,),
    }[function]

    outcome = registry.transact(registry.accounts[1], function, *args)

    assert outcome.reverted
    assert outcome.revert_reason == "only system"
    assert registry.call("get_task", 1)["status"] == STATUS_OPEN
    assert registry.balance(REGISTRY_ADDRESS) == ETHER


def test_settle_rejects_a_task_that_is_not_open(registry):
    winner = registry.accounts[5].address
    assert settle(registry, 1, winner).revert_reason == "task not open"  # never posted

    post_ok(registry)
    assert not settle(registry, 1, winner).reverted
    assert settle(registry, 1, winner).revert_reason == "task not open"  # settled

    post_ok(registry, time_limit=10)
    registry.warp(100)
    assert not registry.system_call("expire_overdue", registry.pending_timestamp).reverted
    assert settle(registry, 2, winner).revert_reason == "task not open"  # expired
    assert registry.balance(REGISTRY_ADDRESS) == 0


@pytest.mark.parametrize(
    ("train_bps", "test_bps", "reason"),
    [(10001, 9000, "train_bps above 10000"), (9000, 10001, "test_bps above 10000")],
)
def test_settle_rejects_accuracies_above_100_percent(registry, train_bps, test_bps, reason):
    post_ok(registry)
    outcome = settle(registry, 1, registry.accounts[5].address, train_bps, test_bps)
    assert outcome.revert_reason == reason
    assert registry.call("get_task", 1)["status"] == STATUS_OPEN


# -- expiry --


def test_expire_refunds_only_overdue_tasks(registry):
    poster = registry.accounts[2].address
    post_ok(registry, poster_index=2, reward=ETHER, time_limit=100)
    post_ok(registry, poster_index=2, reward=2 * ETHER, time_limit=1000)
    first_deadline = registry.call("get_task", 1)["deadline"]

    # at its deadline a task can still be won
    at_deadline = registry.system_call("expire_overdue", first_deadline)
    assert at_deadline.events == []
    assert registry.call("open_task_ids") == [1, 2]

    before = registry.balance(poster)
    outcome = registry.system_call("expire_overdue", first_deadline + 1)

    assert not outcome.reverted
    assert registry.balance(poster) == before + ETHER
    assert registry.balance(REGISTRY_ADDRESS) == 2 * ETHER
    assert registry.call("get_task", 1)["status"] == STATUS_EXPIRED
    assert registry.call("get_task", 2)["status"] == STATUS_OPEN
    assert registry.call("open_task_ids") == [2]
    assert [(e.name, e.args) for e in outcome.events] == [
        ("TaskExpired", {"task_id": 1, "poster": poster, "refund": ETHER})
    ]


def test_expire_removes_consecutive_overdue_tasks(registry):
    # after a swap-and-pop the same slot holds a new id that must be checked too
    post_ok(registry, time_limit=1000)
    post_ok(registry, time_limit=10)
    post_ok(registry, time_limit=10)
    post_ok(registry, time_limit=10)
    registry.warp(100)

    outcome = registry.system_call("expire_overdue", registry.pending_timestamp)

    assert sorted(e.args["task_id"] for e in outcome.events) == [2, 3, 4]
    assert registry.call("open_task_ids") == [1]
    assert registry.balance(REGISTRY_ADDRESS) == ETHER


# -- failed payments --


def test_a_winner_that_rejects_payment_is_owed_and_can_withdraw(registry, wallet_code):
    wallet_abi, wallet_bytecode = wallet_code
    owner = registry.accounts[3]
    wallet = registry.deploy(owner, wallet_bytecode)
    post_ok(registry, reward=2 * ETHER)

    outcome = settle(registry, 1, wallet)

    assert not outcome.reverted  # the system call never fails because of a recipient
    assert registry.balance(wallet) == 0
    assert registry.balance(REGISTRY_ADDRESS) == 2 * ETHER
    assert registry.call("owed", wallet) == 2 * ETHER
    assert registry.call("get_task", 1)["status"] == STATUS_SETTLED
    assert [(e.name, e.args) for e in outcome.events][1] == (
        "PaymentOwed",
        {"account": wallet, "amount": 2 * ETHER},
    )

    claim = registry.send(owner, wallet, encode_call(wallet_abi, "claim", REGISTRY_ADDRESS))

    assert not claim.reverted, claim.revert_reason
    assert registry.balance(wallet) == 2 * ETHER
    assert registry.balance(REGISTRY_ADDRESS) == 0
    assert registry.call("owed", wallet) == 0
    assert [(e.name, e.args) for e in claim.events] == [
        ("Withdrawal", {"account": wallet, "amount": 2 * ETHER})
    ]

    again = registry.send(owner, wallet, encode_call(wallet_abi, "claim", REGISTRY_ADDRESS))
    assert again.reverted


def test_a_poster_that_rejects_its_refund_is_owed(registry, wallet_code):
    wallet_abi, wallet_bytecode = wallet_code
    owner = registry.accounts[3]
    wallet = registry.deploy(owner, wallet_bytecode)
    posted = registry.send(
        owner, wallet, encode_call(wallet_abi, "post_task", REGISTRY_ADDRESS, 10), value=ETHER
    )
    assert not posted.reverted
    assert registry.call("get_task", 1)["poster"] == wallet
    registry.warp(100)

    outcome = registry.system_call("expire_overdue", registry.pending_timestamp)

    assert not outcome.reverted
    assert registry.call("get_task", 1)["status"] == STATUS_EXPIRED
    assert registry.call("owed", wallet) == ETHER
    assert registry.balance(REGISTRY_ADDRESS) == ETHER


def test_withdraw_with_nothing_owed_reverts(registry):
    outcome = registry.transact(registry.accounts[0], "withdraw")
    assert outcome.reverted
    assert outcome.revert_reason == "nothing owed"


# -- task anchor --


def note_best(registry: RegistryChain):
    return registry.system_call("note_best_task", registry.pending_block_number)


def test_the_anchor_moves_only_when_the_best_task_changes(registry):
    assert registry.call("best_anchor") == [0, 0]
    post_ok(registry, reward=ETHER)
    first = registry.pending_block_number
    outcome = note_best(registry)
    assert [(e.name, e.args) for e in outcome.events] == [
        ("BestTaskChanged", {"task_id": 1, "block_number": first})
    ]
    assert registry.call("best_anchor") == [1, first]

    post_ok(registry, reward=ETHER // 2)  # a worse task: task 1 keeps its anchor
    assert note_best(registry).events == []
    assert registry.call("best_anchor") == [1, first]

    post_ok(registry, reward=3 * ETHER)  # a better task takes over from this block
    better = registry.pending_block_number
    note_best(registry)
    assert registry.call("best_anchor") == [3, better]

    settle(registry, 3, registry.accounts[5].address)  # settled: task 1 is best again
    again = registry.pending_block_number
    note_best(registry)
    assert registry.call("best_anchor") == [1, again]


def test_the_anchor_records_when_nothing_is_open(registry):
    post_ok(registry, time_limit=10)
    note_best(registry)
    registry.warp(100)
    registry.system_call("expire_overdue", registry.pending_timestamp)
    empty_since = registry.pending_block_number
    note_best(registry)
    assert registry.call("best_anchor") == [0, empty_since]


# -- miner bonds --

MINER_BOND = ETHER
UNBOND_DELAY = 86400


def test_a_bond_of_at_least_the_minimum_makes_a_miner_bonded(registry):
    miner = registry.accounts[4]
    assert registry.call("is_bonded", miner.address) is False
    registry.transact(miner, "bond", value=MINER_BOND // 2)
    assert registry.call("is_bonded", miner.address) is False
    outcome = registry.transact(miner, "bond", value=MINER_BOND // 2)
    assert [(e.name, e.args) for e in outcome.events] == [
        ("MinerBonded", {"miner": miner.address, "amount": MINER_BOND})
    ]
    assert registry.call("is_bonded", miner.address) is True
    assert registry.balance(REGISTRY_ADDRESS) == MINER_BOND
    assert registry.transact(miner, "bond").revert_reason == "no bond"


def test_unbonding_stops_admission_at_once_and_pays_back_after_the_delay(registry):
    miner = registry.accounts[4]
    registry.transact(miner, "bond", value=2 * MINER_BOND)
    requested = registry.transact(miner, "request_unbond")
    assert not requested.reverted, requested.revert_reason
    assert registry.call("is_bonded", miner.address) is False
    again = registry.transact(miner, "request_unbond")
    assert again.revert_reason == "unbond already requested"
    early = registry.transact(miner, "withdraw_bond")
    assert early.revert_reason == "unbond delay not over"
    assert registry.balance(REGISTRY_ADDRESS) == 2 * MINER_BOND

    registry.warp(UNBOND_DELAY)
    before = registry.balance(miner.address)
    outcome = registry.transact(miner, "withdraw_bond")
    assert not outcome.reverted, outcome.revert_reason
    assert registry.balance(miner.address) == before + 2 * MINER_BOND - outcome.fee
    assert registry.balance(REGISTRY_ADDRESS) == 0
    assert registry.call("bonds", miner.address) == 0
    assert registry.transact(miner, "withdraw_bond").revert_reason == "no unbond requested"


def test_bonding_again_cancels_an_unbond_request(registry):
    miner = registry.accounts[4]
    registry.transact(miner, "bond", value=MINER_BOND)
    registry.transact(miner, "request_unbond")
    registry.transact(miner, "bond", value=1)
    assert registry.call("is_bonded", miner.address) is True
    registry.warp(UNBOND_DELAY)
    assert registry.transact(miner, "withdraw_bond").revert_reason == "no unbond requested"


def test_unbond_without_a_bond_reverts(registry):
    assert registry.transact(registry.accounts[4], "request_unbond").revert_reason == "not bonded"


def test_registry_constants_are_the_chain_parameters(registry):
    """The Vyper constants cannot import Python: this pins them to vm_hooks.params."""
    from vm_hooks import params

    assert post(registry, time_limit=params.MAX_TASK_TIME_LIMIT + 1).revert_reason == (
        "time limit too long"
    )
    post_ok(registry, time_limit=params.MAX_TASK_TIME_LIMIT)
    miner = registry.accounts[4]
    registry.transact(miner, "bond", value=params.MINER_BOND - 1)
    assert registry.call("is_bonded", miner.address) is False
    registry.transact(miner, "bond", value=1)
    assert registry.call("is_bonded", miner.address) is True
    registry.transact(miner, "request_unbond")
    registry.warp(params.UNBOND_DELAY - BLOCK_INTERVAL - 1)
    assert registry.transact(miner, "withdraw_bond").revert_reason == "unbond delay not over"
    registry.warp(1)
    assert not registry.transact(miner, "withdraw_bond").reverted
