"""Keccak proof of work for idle blocks, and its retarget rule.

Idle blocks keep the chain live when there is nothing to train (no open task, or the best
task is overdue). Their work is tiny on purpose: the only job is pacing blocks to a
configured interval, so the retarget is Homestead's rule with a faster step.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final, Optional

import rlp
from eth.abc import BlockHeaderAPI
from eth.constants import ZERO_HASH32
from eth_utils import keccak

ZERO_NONCE: Final = bytes(8)
MAX_HASH: Final = 2**256


@dataclass(frozen=True)
class IdleParams:
    """Chain configuration of idle blocks."""

    target_interval: int = 5  # seconds between idle blocks
    initial_work: int = 1 << 14  # work of the first idle block after a non-idle parent
    min_work: int = 16
    step_divisor: int = 8  # each block moves the work by at most 1/8 per interval missed
    #: Seconds after a PoLe block before an idle block may follow it. Every idle block adds
    #: to the chain score, so without this pause a better sibling revealed a few seconds
    #: later would have to beat the first PoLe block by more than the idle blocks stacked
    #: on it meanwhile: "first to seal" instead of "best test accuracy" would win.
    reveal_window: int = 10


def pow_hash(header: BlockHeaderAPI) -> bytes:
    """Hash of everything in the header except the nonce that the work searches over."""
    return keccak(rlp.encode(header.copy(nonce=ZERO_NONCE, mix_hash=ZERO_HASH32)))


def pow_value(header_pow_hash: bytes, nonce: bytes) -> int:
    return int.from_bytes(keccak(header_pow_hash + nonce), "big")


def meets_work(header_pow_hash: bytes, nonce: bytes, work: int) -> bool:
    return pow_value(header_pow_hash, nonce) < MAX_HASH // work


def expected_work(
    parent_work: Optional[int], parent_timestamp: int, timestamp: int, params: IdleParams
) -> int:
    """Work an idle block must carry; ``parent_work`` is None when the parent is not idle."""
    if parent_work is None:
        return params.initial_work
    adjustment = max(1 - (timestamp - parent_timestamp) // params.target_interval, -99)
    return max(params.min_work, parent_work + parent_work // params.step_divisor * adjustment)


def solve(
    header_pow_hash: bytes, work: int, stop: Optional[threading.Event] = None
) -> Optional[bytes]:
    """Search nonces from zero; None when ``stop`` is set first."""
    target = MAX_HASH // work
    counter = 0
    while stop is None or not (counter & 0xFFF == 0 and stop.is_set()):
        nonce = counter.to_bytes(8, "big")
        if pow_value(header_pow_hash, nonce) < target:
            return nonce
        counter += 1
    return None
