"""The PoLe seal as it travels in a block header's 32-byte ``extra_data``.

Layout (big-endian, exactly 32 bytes so web3's ExtraDataLengthError never fires):

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

Unused bytes must be zero, so one seal has exactly one encoding. The release digest is cut
to 24 bytes (192 bits, still far beyond any second-preimage search) because the other
fields need the remaining eight.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from eth_utils import ValidationError

MAGIC: Final = b"PL"
VERSION: Final = 1
EXTRA_DATA_SIZE: Final = 32
RELEASE_DIGEST_PREFIX_SIZE: Final = 24
MAX_BPS: Final = 10_000


class BlockKind(enum.IntEnum):
    POLE = 1
    IDLE = 2
    DEV = 3


class SealError(ValidationError):
    """A header's seal breaks a PoLe rule; the message names the rule and the values."""


@dataclass(frozen=True)
class Seal:
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
        if len(extra_data) != EXTRA_DATA_SIZE:
            raise SealError(
                f"extra_data must be {EXTRA_DATA_SIZE} bytes, got {len(extra_data)}"
            )
        if extra_data[:2] != MAGIC:
            raise SealError(f"extra_data magic must be {MAGIC!r}, got {extra_data[:2]!r}")
        if extra_data[2] != VERSION:
            raise SealError(f"unsupported seal version {extra_data[2]}")
        try:
            kind = BlockKind(extra_data[3])
        except ValueError:
            raise SealError(f"unknown block kind {extra_data[3]}") from None
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
                    raise SealError(f"{name} {value} exceeds {MAX_BPS}")
        elif kind is BlockKind.IDLE:
            seal = cls(kind, idle_work=int.from_bytes(body[0:8], "big"))
            if any(body[8:]):
                raise SealError("idle seal padding must be zero")
        else:
            seal = cls(kind)
            if any(body):
                raise SealError("dev seal padding must be zero")
        return seal
