"""The PoLe seal and the one mapping between it and a block header's fields.

A seal lives in five header fields (docs/PROTOCOL.md, "Seal"):

=============== ==================================== ============ ============
field           PoLe block                           idle block   dev block
=============== ==================================== ============ ============
``coinbase``    the miner                            anyone       anyone
``mix_hash``    model commitment                     zero         zero
``nonce``       task id, 8 bytes big-endian          PoW nonce    zero
``difficulty``  score = claimed test accuracy (bps)  IDLE_SCORE   DEV_SCORE
``extra_data``  ``Seal`` (layout below)              ``Seal``     ``Seal``
=============== ==================================== ============ ============

``extra_data`` layout (big-endian, exactly 32 bytes so web3's ExtraDataLengthError never fires):

====== ======= =======================================================
offset length  field
====== ======= =======================================================
0      2       magic ``b"PL"``
2      1       version (1)
3      1       block kind (1 PoLe, 2 idle, 3 dev)
4      2       PoLe: training accuracy, basis points
6      2       PoLe: test accuracy, basis points
8      24      PoLe: first 24 bytes of the digest of the release answered
4      8       idle: proof-of-work difficulty ("work") of this block
====== ======= =======================================================

Unused bytes and fields must be zero, so one seal has exactly one encoding. The release
digest is cut to 24 bytes (192 bits, still far beyond any second-preimage search) because
the other fields need the remaining eight.

Build headers with ``header_fields``; read them with ``read_seal`` (a py-evm header) or
``read_block_seal`` (a block as web3 returns it). Nothing else reads these fields by offset.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Dict, Final, Mapping

from eth.abc import BlockHeaderAPI
from eth.constants import ZERO_HASH32
from eth_typing import Address
from eth_utils import to_canonical_address

from .idle_pow import ZERO_NONCE
from .seal_errors import SealError, SealFormatError

__all__ = [
    "BlockKind", "DEV_SCORE", "IDLE_SCORE", "Seal", "SealError", "SealedHeader",
    "header_fields", "read_block_seal", "read_seal",
]

MAGIC: Final = b"PL"
VERSION: Final = 1
EXTRA_DATA_SIZE: Final = 32
RELEASE_DIGEST_PREFIX_SIZE: Final = 24
MAX_BPS: Final = 10_000
TASK_ID_SIZE: Final = 8
#: Score (difficulty) of idle and dev blocks: any PoLe block (score >= 1 bps) ties or beats it.
IDLE_SCORE: Final = 1
DEV_SCORE: Final = 1


class BlockKind(enum.IntEnum):
    POLE = 1
    IDLE = 2
    DEV = 3


@dataclass(frozen=True)
class Seal:
    """The part of a seal carried in ``extra_data``."""

    kind: BlockKind
    train_bps: int = 0
    test_bps: int = 0
    release_digest_prefix: bytes = bytes(RELEASE_DIGEST_PREFIX_SIZE)
    idle_work: int = 0

    @classmethod
    def pole(cls, train_bps: int, test_bps: int, release_digest: bytes) -> "Seal":
        return cls(
            BlockKind.POLE,
            train_bps=train_bps,
            test_bps=test_bps,
            release_digest_prefix=release_digest[:RELEASE_DIGEST_PREFIX_SIZE],
        )

    @classmethod
    def idle(cls, work: int) -> "Seal":
        return cls(BlockKind.IDLE, idle_work=work)

    @classmethod
    def dev(cls) -> "Seal":
        return cls(BlockKind.DEV)

    def encode(self) -> bytes:
        head = MAGIC + bytes([VERSION, self.kind])
        if self.kind is BlockKind.POLE:
            body = (
                self.train_bps.to_bytes(2, "big")
                + self.test_bps.to_bytes(2, "big")
                + self.release_digest_prefix
            )
        elif self.kind is BlockKind.IDLE:
            body = self.idle_work.to_bytes(8, "big")
        else:
            body = b""
        return (head + body).ljust(EXTRA_DATA_SIZE, b"\x00")

    @classmethod
    def decode(cls, extra_data: bytes) -> "Seal":
        """Parse ``extra_data``; raises SealFormatError naming the broken layout rule."""
        if len(extra_data) != EXTRA_DATA_SIZE:
            raise SealFormatError(
                f"extra_data must be {EXTRA_DATA_SIZE} bytes, got {len(extra_data)}"
            )
        if extra_data[:2] != MAGIC:
            raise SealFormatError(
                f"extra_data magic must be {MAGIC!r}, got {extra_data[:2]!r}"
            )
        if extra_data[2] != VERSION:
            raise SealFormatError(f"unsupported seal version {extra_data[2]}")
        try:
            kind = BlockKind(extra_data[3])
        except ValueError:
            raise SealFormatError(f"unknown block kind {extra_data[3]}") from None
        body = extra_data[4:]
        if kind is BlockKind.POLE:
            seal = cls(
                kind,
                train_bps=int.from_bytes(body[0:2], "big"),
                test_bps=int.from_bytes(body[2:4], "big"),
                release_digest_prefix=bytes(body[4:28]),
            )
            for name in ("train_bps", "test_bps"):
                value = getattr(seal, name)
                if value > MAX_BPS:
                    raise SealFormatError(f"{name} {value} exceeds {MAX_BPS}")
        elif kind is BlockKind.IDLE:
            seal = cls(kind, idle_work=int.from_bytes(body[0:8], "big"))
            if any(body[8:]):
                raise SealFormatError("idle seal padding must be zero")
        else:
            seal = cls(kind)
            if any(body):
                raise SealFormatError("dev seal padding must be zero")
        return seal


@dataclass(frozen=True)
class SealedHeader:
    """A header's seal as consensus reads it: the ``Seal`` plus the other four fields."""

    seal: Seal
    miner: Address  # coinbase
    score: int  # difficulty
    task_id: int = 0  # PoLe: nonce
    commitment: bytes = ZERO_HASH32  # PoLe: mix_hash, keccak(model || miner || parent)
    pow_nonce: bytes = ZERO_NONCE  # idle: nonce

    @property
    def kind(self) -> BlockKind:
        return self.seal.kind

    @property
    def train_bps(self) -> int:
        return self.seal.train_bps

    @property
    def test_bps(self) -> int:
        return self.seal.test_bps

    @property
    def release_digest_prefix(self) -> bytes:
        return self.seal.release_digest_prefix

    @property
    def idle_work(self) -> int:
        return self.seal.idle_work


def header_fields(
    seal: Seal, *, miner: Address, task_id: int = 0, commitment: bytes = ZERO_HASH32
) -> Dict[str, Any]:
    """The header fields (py-evm names) that carry ``seal``: pass them to the header factory.

    An idle block's nonce is left zero for the proof-of-work search to fill in.
    """
    if seal.kind is not BlockKind.POLE and (task_id or commitment != ZERO_HASH32):
        raise ValueError(f"a {seal.kind.name} seal carries no task id or model commitment")
    score = {BlockKind.POLE: seal.test_bps, BlockKind.IDLE: IDLE_SCORE, BlockKind.DEV: DEV_SCORE}
    return {
        "coinbase": miner,
        "difficulty": score[seal.kind],
        "nonce": task_id.to_bytes(TASK_ID_SIZE, "big"),
        "mix_hash": commitment,
        "extra_data": seal.encode(),
    }


def read_seal(header: BlockHeaderAPI) -> SealedHeader:
    """The seal of a non-genesis header; raises SealFormatError if the fields break the mapping."""
    return _read(
        header.extra_data, header.coinbase, header.difficulty, header.nonce, header.mix_hash
    )


def read_block_seal(block: Mapping[str, Any]) -> SealedHeader:
    """The seal of a non-genesis block as web3 returns it (``w3.eth.get_block``)."""
    return _read(
        bytes(block["extraData"]),
        Address(to_canonical_address(block["miner"])),
        int(block["difficulty"]),
        bytes(block["nonce"]),
        bytes(block["mixHash"]),
    )


def _read(
    extra_data: bytes, miner: Address, score: int, nonce: bytes, mix_hash: bytes
) -> SealedHeader:
    seal = Seal.decode(extra_data)
    if seal.kind is BlockKind.POLE:
        task_id = int.from_bytes(nonce, "big")
        return SealedHeader(seal, miner, score, task_id=task_id, commitment=mix_hash)
    if mix_hash != ZERO_HASH32:
        raise SealFormatError(f"{seal.kind.name.lower()} block mix_hash must be zero")
    if seal.kind is BlockKind.IDLE:
        return SealedHeader(seal, miner, score, pow_nonce=nonce)
    if nonce != ZERO_NONCE:
        raise SealFormatError("dev block nonce must be zero")
    return SealedHeader(seal, miner, score)
