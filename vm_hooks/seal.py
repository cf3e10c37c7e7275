"""The PoLe seal and the one mapping between it and a block header's fields.

A seal lives in seven header fields (docs/PROTOCOL.md, "Seal"):

============================ ==================================== ========== ==========
field                        PoLe block                           idle block dev block
============================ ==================================== ========== ==========
``coinbase``                 the miner                            anyone     anyone
``mix_hash``                 model commitment (to the anchor)     zero       zero
``nonce``                    task id, 8 bytes big-endian          PoW nonce  zero
``difficulty``               score = ``pole_score(test bps)``     IDLE_SCORE DEV_SCORE
``extra_data``               ``Seal`` (layout below)              ``Seal``   ``Seal``
``parent_beacon_block_root`` coinbase's signature: r              zero       zero
``requests_hash``            coinbase's signature: yParity|s      zero       zero
============================ ==================================== ========== ==========

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

A PoLe block is signed by its coinbase, so nobody else can re-wrap a published seal with
other transactions or another timestamp: an EIP-2098 compact signature (64 bytes, low s) over
``signing_hash(header)``, the keccak of the RLP header with both signature fields zero, so
the signature covers every other field. It lives in Prague's ``parent_beacon_block_root`` and
``requests_hash``, which this chain has no use for (no beacon chain, no EIP-7685 requests;
docs/PROTOCOL.md says why neither field reaches the state). ``sign_header`` signs,
``seal_signer`` recovers the signer; nothing else encodes or decodes the signature.

Build headers with ``header_fields``; read them with ``read_seal`` (a py-evm header) or
``read_block_seal`` (a block as web3 returns it). Nothing else reads these fields by offset.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Dict, Final, Mapping

import rlp
from eth.abc import BlockHeaderAPI
from eth.constants import ZERO_HASH32
from eth_keys import keys
from eth_keys.constants import SECPK1_N
from eth_keys.exceptions import BadSignature
from eth_typing import Address, Hash32
from eth_utils import keccak, to_canonical_address

from vm_hooks.params import POLE_SCORE_UNIT

from .idle_pow import ZERO_NONCE
from .seal_errors import SealError, SealFormatError, SignatureFormatError

__all__ = [
    "BlockKind", "DEV_SCORE", "IDLE_SCORE", "NO_SIGNATURE", "Seal", "SealError",
    "SealedHeader", "header_fields", "pole_score", "read_block_seal", "read_seal", "seal_signer",
    "sign_header", "signing_hash",
]

MAGIC: Final = b"PL"
VERSION: Final = 1
EXTRA_DATA_SIZE: Final = 32
RELEASE_DIGEST_PREFIX_SIZE: Final = 24
MAX_BPS: Final = 10_000
TASK_ID_SIZE: Final = 8
#: Score (difficulty) of idle and dev blocks: one PoLe block (score >= POLE_SCORE_UNIT) outweighs
#: every idle block a branch can gather between a task's anchor and its deadline.
IDLE_SCORE: Final = 1
DEV_SCORE: Final = 1
#: An EIP-2098 compact signature: r (32 bytes), then yParity in the top bit over s (32 bytes).
SIGNATURE_SIZE: Final = 64
#: The signature fields of an unsigned header, and of every idle and dev block.
NO_SIGNATURE: Final = bytes(SIGNATURE_SIZE)
_Y_PARITY_BIT: Final = 1 << 255


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
    commitment: bytes = ZERO_HASH32  # PoLe: mix_hash, keccak(model || miner || anchor hash)
    pow_nonce: bytes = ZERO_NONCE  # idle: nonce
    #: PoLe: parent_beacon_block_root || requests_hash, the coinbase's compact signature
    signature: bytes = NO_SIGNATURE

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

    An idle block's nonce is left zero for the proof-of-work search to fill in, a PoLe
    block's signature for ``sign_header`` once every other field is final.
    """
    if seal.kind is not BlockKind.POLE and (task_id or commitment != ZERO_HASH32):
        raise ValueError(f"a {seal.kind.name} seal carries no task id or model commitment")
    score = {
        BlockKind.POLE: pole_score(seal.test_bps), BlockKind.IDLE: IDLE_SCORE,
        BlockKind.DEV: DEV_SCORE,
    }
    return {
        "coinbase": miner,
        "difficulty": score[seal.kind],
        "nonce": task_id.to_bytes(TASK_ID_SIZE, "big"),
        "mix_hash": commitment,
        "extra_data": seal.encode(),
        **_signature_fields(NO_SIGNATURE),
    }


def pole_score(test_bps: int) -> int:
    """The score (difficulty) of a PoLe block claiming ``test_bps``: the one place it is set.

    Scaled by POLE_SCORE_UNIT so that idle blocks between a task's anchor and its PoLe blocks
    never outweigh one basis point of test accuracy (docs/PROTOCOL.md, "Task anchor").
    """
    return test_bps * POLE_SCORE_UNIT


def read_seal(header: BlockHeaderAPI) -> SealedHeader:
    """The seal of a non-genesis header; raises SealFormatError if the fields break the mapping."""
    return _read(
        header.extra_data, header.coinbase, header.difficulty, header.nonce, header.mix_hash,
        _header_signature(header),
    )


def read_block_seal(block: Mapping[str, Any]) -> SealedHeader:
    """The seal of a non-genesis block as web3 returns it (``w3.eth.get_block``)."""
    return _read(
        bytes(block["extraData"]),
        Address(to_canonical_address(block["miner"])),
        int(block["difficulty"]),
        bytes(block["nonce"]),
        bytes(block["mixHash"]),
        bytes(block["parentBeaconBlockRoot"]) + bytes(block["requestsHash"]),
    )


def _read(
    extra_data: bytes,
    miner: Address,
    score: int,
    nonce: bytes,
    mix_hash: bytes,
    signature: bytes,
) -> SealedHeader:
    seal = Seal.decode(extra_data)
    if seal.kind is BlockKind.POLE:
        task_id = int.from_bytes(nonce, "big")
        return SealedHeader(
            seal, miner, score, task_id=task_id, commitment=mix_hash, signature=signature
        )
    if mix_hash != ZERO_HASH32:
        raise SealFormatError(f"{seal.kind.name.lower()} block mix_hash must be zero")
    if signature != NO_SIGNATURE:
        raise SealFormatError(
            f"{seal.kind.name.lower()} block parent_beacon_block_root and requests_hash "
            "must be zero (only PoLe blocks are signed)"
        )
    if seal.kind is BlockKind.IDLE:
        return SealedHeader(seal, miner, score, pow_nonce=nonce)
    if nonce != ZERO_NONCE:
        raise SealFormatError("dev block nonce must be zero")
    return SealedHeader(seal, miner, score)


# -- the coinbase's signature over the rest of a PoLe header ------------------------------


def signing_hash(header: BlockHeaderAPI) -> Hash32:
    """What the coinbase signs: keccak(rlp(header with both signature fields zero))."""
    unsigned = header.copy(**_signature_fields(NO_SIGNATURE))
    return Hash32(keccak(rlp.encode(unsigned)))


def sign_header(header: BlockHeaderAPI, private_key: keys.PrivateKey) -> BlockHeaderAPI:
    """``header`` signed by ``private_key`` (any signature it carried is replaced).

    eth_keys signs with a low s (both its backends), as EIP-2098 and ``seal_signer`` need.
    """
    signature = private_key.sign_msg_hash(signing_hash(header))
    compact = signature.r.to_bytes(32, "big") + (
        signature.v * _Y_PARITY_BIT | signature.s
    ).to_bytes(32, "big")
    return header.copy(**_signature_fields(compact))


def seal_signer(header: BlockHeaderAPI) -> Address:
    """The address that signed ``header``; SignatureFormatError if the fields hold no
    canonical compact signature (one signature has one encoding, as every seal field)."""
    compact = _header_signature(header)
    r = int.from_bytes(compact[:32], "big")
    y_parity_and_s = int.from_bytes(compact[32:], "big")
    y_parity, s = y_parity_and_s >> 255, y_parity_and_s & (_Y_PARITY_BIT - 1)
    if not 0 < r < SECPK1_N:
        raise SignatureFormatError(f"seal signature r must be in [1, n), got {r:#x}")
    if not 0 < s <= SECPK1_N // 2:
        raise SignatureFormatError(f"seal signature s must be in [1, n/2] (low s), got {s:#x}")
    try:
        public_key = keys.Signature(vrs=(y_parity, r, s)).recover_public_key_from_msg_hash(
            signing_hash(header)
        )
    except BadSignature as exc:
        raise SignatureFormatError(f"seal signature recovers no public key: {exc}") from None
    return Address(public_key.to_canonical_address())


def _signature_fields(compact: bytes) -> Dict[str, bytes]:
    return {"parent_beacon_block_root": compact[:32], "requests_hash": compact[32:]}


def _header_signature(header: BlockHeaderAPI) -> bytes:
    return header.parent_beacon_block_root + header.requests_hash
