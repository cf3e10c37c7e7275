"""What the node's log says about a PoLe block: its task, miner and accuracies, and which
sibling fork choice kept. Every block from outside the node (pole_submitBlock, gossip, sync)
enters through BlockImporter, which calls `log_pole_block` once per stored block, so a PoLe
block is described once, the same way, whichever path brought it.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from eth.abc import BlockAPI, BlockHeaderAPI
from eth_utils import encode_hex, to_checksum_address

from vm_hooks.seal import BlockKind, SealError, read_seal


def describe_pole_block(header: BlockHeaderAPI) -> str | None:
    """`PoLe block #7 0x1234abcd… task 1 by 0xMiner: training 95.10 %, test 93.20 %`, or None
    for a header that is not a PoLe block."""
    if header.block_number == 0:
        return None
    try:
        sealed = read_seal(header)
    except SealError:
        return None
    if sealed.kind is not BlockKind.POLE:
        return None
    return (
        f"PoLe block #{header.block_number} {encode_hex(header.hash)[:12]}… task "
        f"{sealed.task_id} by {to_checksum_address(sealed.miner)}: training "
        f"{sealed.train_bps / 100:.2f} %, test {sealed.test_bps / 100:.2f} %"
    )


def log_pole_block(
    log: logging.Logger,
    block: BlockAPI,
    new_canonical: Sequence[BlockAPI],
    old_canonical: Sequence[BlockAPI],
    head: BlockHeaderAPI,
) -> bool:
    """One line for a stored PoLe block: new head (naming the sibling it displaced, if any)
    or a sibling that lost fork choice to the head. Returns False, logging nothing, for
    other blocks."""
    described = describe_pole_block(block.header)
    if described is None:
        return False
    if not new_canonical:
        log.info(
            "%s: lost fork choice; the head stays #%d %s (score %d)",
            described, head.block_number, encode_hex(head.hash)[:12] + "…", head.difficulty,
        )
        return True
    log.info("%s: new head (score %d)", described, block.header.difficulty)
    for displaced in old_canonical:
        log.info(
            "  it replaces %s, which lost fork choice",
            describe_pole_block(displaced.header)
            or f"block #{displaced.number} {encode_hex(displaced.hash)[:12]}…",
        )
    return True
