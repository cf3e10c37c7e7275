"""The node's log line for a PoLe block: task, miner, accuracies in %, and which sibling won.

Real py-evm Prague blocks whose headers carry real PoLe and idle seals (vm_hooks.seal's
header mapping); the log is the node's own `pole.node` logger.
"""
from __future__ import annotations

import logging

from eth.vm.forks.prague.blocks import PragueBlock, PragueBlockHeader
from eth_utils import encode_hex, keccak, to_canonical_address, to_checksum_address

from pole_chain.node.block_log import describe_pole_block, log_pole_block
from vm_hooks.seal import Seal, header_fields

MINER = to_canonical_address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
OTHER = to_canonical_address("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
LOG = logging.getLogger("pole.node")


def pole_block(miner: bytes, test_bps: int, number: int = 7) -> PragueBlock:
    fields = header_fields(
        Seal.pole(9512, test_bps, keccak(b"release")), miner=miner, task_id=3,
        commitment=keccak(miner),
    )
    header = PragueBlockHeader(block_number=number, gas_limit=30_000_000, timestamp=1_000,
                               **fields)
    return PragueBlock(header)


def idle_block(number: int = 7) -> PragueBlock:
    fields = header_fields(Seal.idle(1 << 14), miner=MINER)
    return PragueBlock(PragueBlockHeader(block_number=number, gas_limit=30_000_000, **fields))


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pole.node"]


def test_a_pole_block_is_described_by_task_miner_and_accuracies_in_percent():
    block = pole_block(MINER, 9340)
    assert describe_pole_block(block.header) == (
        f"PoLe block #7 {encode_hex(block.hash)[:12]}… task 3 by {to_checksum_address(MINER)}: "
        "training 95.12 %, test 93.40 %"
    )
    assert describe_pole_block(idle_block().header) is None


def test_a_new_head_names_the_sibling_it_replaced(caplog):
    better, worse = pole_block(MINER, 9400), pole_block(OTHER, 9300)
    with caplog.at_level(logging.INFO, logger="pole.node"):
        assert log_pole_block(LOG, better, [better], [worse], better.header) is True
    assert messages(caplog) == [
        f"{describe_pole_block(better.header)}: new head (score {better.header.difficulty})",
        f"  it replaces {describe_pole_block(worse.header)}, which lost fork choice",
    ]


def test_a_losing_sibling_is_logged_with_the_head_that_stays(caplog):
    head, late = pole_block(MINER, 9400), pole_block(OTHER, 9300)
    with caplog.at_level(logging.INFO, logger="pole.node"):
        assert log_pole_block(LOG, late, [], [], head.header) is True
        assert log_pole_block(LOG, idle_block(8), [idle_block(8)], [], head.header) is False
    assert messages(caplog) == [
        f"{describe_pole_block(late.header)}: lost fork choice; the head stays #7 "
        f"{encode_hex(head.hash)[:12]}… (score {head.header.difficulty})"
    ]
