"""DDH-based inner-product functional encryption (Abdalla, Bourse, De Caro, Pointcheval,
PKC 2015, "Simple Functional Encryption Schemes for Inner Products", section 3), written once
over a prime-order group G = <g> of order q (miner.ipfe.group), additively here:

    setup(n)            s <- (Z_q \\ {0})^n                  msk = s,  mpk = (h_i = s_i g)
    encrypt(mpk, x)     r <- Z_q \\ {0}                      ct = (r g, (r h_i + x_i g)_i)
    keygen(msk, y)      sk_y = <s, y> mod q
    decrypt(ct, y, sk)  sum_i y_i ct_i - sk_y ct_0 = <x, y> g,  then a bounded discrete log

(the paper's h_i^r g^x_i is r h_i + x_i g in additive notation). x and y are integer vectors;
decryption recovers <x, y> when |<x, y>| is within the discrete-log table's bound
(miner.ipfe.dlog). A key for y reveals <x, y> and, under DDH, nothing else about x (selective
security, as in the paper).

Wire formats (all integers big-endian; every decoder refuses anything else, including trailing
bytes, with IPFEFormatError; G_ENC is the 33-byte element encoding of miner.ipfe.group; the
group id is 1 for secp256k1):

    master public key   "IPMK" | version 1 | group id (1) | n (u32) | n x G_ENC   (no identity)
    master secret key   "IPSK" | version 1 | group id (1) | n (u32) | n x 32-byte s_i, 1..q-1
    one ciphertext      "IPCT" | version 1 | group id (1) | n (u32) | ct_0 (not the identity)
                        | n x G_ENC
    ciphertext batch    "IPCB" | version 1 | group id (1) | N (u32) | n (u32) | mpk digest (32)
                        | N x (ct_0 | n x G_ENC)
    functional keys     "IPFK" | version 1 | group id (1) | k (u32) | n (u32) | mpk digest (32)
                        | k x n coefficients (i8, -127..127, row-major) | k x 32-byte sk, < q

The mpk digest is keccak256 of the master public key's encoding: it ties keys and ciphertext
batches to one master key, so a key for another one is refused before any decryption.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
from eth_hash.auto import keccak

from .errors import IPFEDecryptError, IPFEFormatError
from .group import GROUP_IDS, Group, get_group

VERSION = 1
SCALAR_SIZE = 32
DIGEST_SIZE = 32
MAX_DIM = 4096  # n: at most the dataset format's MAX_FEATURES
MAX_KEYS = 2 * MAX_DIM  # k: an SML of expansion 2 over MAX_DIM features
MAX_BATCH = 200_000  # N: the dataset format's MAX_SAMPLES
MAX_BATCH_ELEMENTS = 1 << 24  # N * (n + 1) points: an encoding of at most ~550 MB
MAX_COEFF = 127  # |y_i| in a functional key (SML rows are -1, 0, +1)

MPK_MAGIC, MSK_MAGIC, CT_MAGIC, BATCH_MAGIC, KEYS_MAGIC = b"IPMK", b"IPSK", b"IPCT", b"IPCB", b"IPFK"
_HEAD = struct.Struct(">4sBBI")  # magic, version, group id, first count
_U32 = struct.Struct(">I")


# --- helpers ---------------------------------------------------------------------------------


def _as_bytes(data: object, what: str) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise IPFEFormatError(f"{what} must be bytes, got {type(data).__name__}")
    return bytes(data)


def _head(group: Group, magic: bytes, count: int) -> bytes:
    return _HEAD.pack(magic, VERSION, group.group_id, count)


def _read_head(data: bytes, magic: bytes, what: str, group_backend: str | Group | None):
    """(group, first count) after checking magic, version and group id."""
    if len(data) < _HEAD.size:
        raise IPFEFormatError(f"{what} is {len(data)} bytes, shorter than its header")
    got_magic, version, group_id, count = _HEAD.unpack_from(data)
    if got_magic != magic:
        raise IPFEFormatError(f"{what} has magic {got_magic!r}, expected {magic!r}")
    if version != VERSION:
        raise IPFEFormatError(f"{what} version {version} is not {VERSION}")
    if group_id not in GROUP_IDS.values():
        raise IPFEFormatError(f"{what} names unknown group id {group_id}")
    group = _group_of(group_backend)
    if group.group_id != group_id:  # pragma: no cover - one group today
        raise IPFEFormatError(f"{what} is for group id {group_id}, not {group.group_id}")
    return group, count


def _group_of(group: str | Group | None) -> Group:
    if group is None:
        return get_group()
    if isinstance(group, str):
        return get_group(group)
    return group


def _check_dim(n: int, what: str) -> None:
    if not 1 <= n <= MAX_DIM:
        raise IPFEFormatError(f"{what} dimension {n} outside 1..{MAX_DIM}")


def _decode_points(group: Group, data: bytes, offset: int, count: int, what: str) -> list:
    size = group.element_size
    return [
        group.decode(data[offset + i * size: offset + (i + 1) * size]) for i in range(count)
    ]


def _scalar_bytes(k: int) -> bytes:
    return int(k).to_bytes(SCALAR_SIZE, "big")


def _random_nonzero_scalar(q: int) -> int:
    return secrets.randbelow(q - 1) + 1


def _int_vector(values, n: int | None, what: str) -> list[int]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise IPFEFormatError(f"{what} must be a vector, got shape {arr.shape}")
    if arr.dtype == object:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in arr):
            raise IPFEFormatError(f"{what} must hold integers")
        out = [int(v) for v in arr]
    elif arr.dtype.kind in "iu":
        out = [int(v) for v in arr]
    else:
        raise IPFEFormatError(f"{what} must hold integers, got dtype {arr.dtype}")
    if n is not None and len(out) != n:
        raise IPFEFormatError(f"{what} has {len(out)} entries, expected {n}")
    return out


# --- keys --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MasterPublicKey:
    """mpk = (h_1 .. h_n), h_i = s_i g."""

    group: Group
    h: tuple

    @property
    def n(self) -> int:
        return len(self.h)

    @cached_property
    def encoded(self) -> bytes:
        return _head(self.group, MPK_MAGIC, self.n) + b"".join(self.group.encode(p) for p in self.h)

    def to_bytes(self) -> bytes:
        return self.encoded

    @cached_property
    def digest(self) -> bytes:
        """keccak256 of the encoding: what keys and ciphertext batches name."""
        return keccak(self.encoded)

    @classmethod
    def from_bytes(cls, data: bytes, group: str | Group | None = None) -> "MasterPublicKey":
        data = _as_bytes(data, "master public key")
        group, n = _read_head(data, MPK_MAGIC, "master public key", group)
        _check_dim(n, "master public key")
        if len(data) != _HEAD.size + n * group.element_size:
            raise IPFEFormatError(
                f"master public key of dimension {n} must be {_HEAD.size + n * group.element_size}"
                f" bytes, got {len(data)}"
            )
        h = _decode_points(group, data, _HEAD.size, n, "master public key")
        if any(group.is_identity(p) for p in h):
            raise IPFEFormatError("master public key contains the identity (s_i = 0)")
        return cls(group, tuple(h))


@dataclass(frozen=True, eq=False)
class MasterSecretKey:
    """msk = s in (Z_q \\ {0})^n. The data node keeps it (and online: it derives every key)."""

    group: Group
    s: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.s)

    @cached_property
    def public_key(self) -> MasterPublicKey:
        return MasterPublicKey(self.group, tuple(self.group.mul_gen(si) for si in self.s))

    def to_bytes(self) -> bytes:
        return _head(self.group, MSK_MAGIC, self.n) + b"".join(_scalar_bytes(si) for si in self.s)

    @classmethod
    def from_bytes(cls, data: bytes, group: str | Group | None = None) -> "MasterSecretKey":
        data = _as_bytes(data, "master secret key")
        group, n = _read_head(data, MSK_MAGIC, "master secret key", group)
        _check_dim(n, "master secret key")
        if len(data) != _HEAD.size + n * SCALAR_SIZE:
            raise IPFEFormatError(f"master secret key of dimension {n} has the wrong length")
        s = tuple(
            int.from_bytes(data[_HEAD.size + i * SCALAR_SIZE: _HEAD.size + (i + 1) * SCALAR_SIZE], "big")
            for i in range(n)
        )
        if not all(0 < si < group.order for si in s):
            raise IPFEFormatError("master secret key scalars must be in 1..q-1")
        return cls(group, s)


def setup(n: int, group: str | Group | None = None) -> tuple[MasterPublicKey, MasterSecretKey]:
    """(mpk, msk) for vectors of n integers. s_i is drawn from 1..q-1 (so no h_i is the
    identity; the paper's Z_q loses nothing by it)."""
    group = _group_of(group)
    if not 1 <= n <= MAX_DIM:
        raise ValueError(f"IPFE dimension {n} outside 1..{MAX_DIM}")
    msk = MasterSecretKey(group, tuple(_random_nonzero_scalar(group.order) for _ in range(n)))
    return msk.public_key, msk


@dataclass(frozen=True, eq=False)
class FunctionalKeys:
    """Functional keys for k coefficient rows y_1..y_k (one row: one key), each with
    sk_j = <s, y_j> mod q, bound to one master public key by its digest."""

    group: Group
    mpk_digest: bytes
    rows: np.ndarray  # int8 (k, n), read-only
    sk: tuple[int, ...]

    def __post_init__(self) -> None:
        rows = np.array(self.rows, dtype=np.int64)
        if rows.ndim != 2 or rows.shape[0] != len(self.sk):
            raise IPFEFormatError(f"key rows {rows.shape} do not match {len(self.sk)} scalars")
        if np.any(np.abs(rows) > MAX_COEFF):
            raise IPFEFormatError(f"key coefficients must be in -{MAX_COEFF}..{MAX_COEFF}")
        rows = rows.astype(np.int8)
        rows.setflags(write=False)
        object.__setattr__(self, "rows", rows)

    @property
    def k(self) -> int:
        return int(self.rows.shape[0])

    @property
    def n(self) -> int:
        return int(self.rows.shape[1])

    def to_bytes(self) -> bytes:
        return (
            _head(self.group, KEYS_MAGIC, self.k) + _U32.pack(self.n) + self.mpk_digest
            + self.rows.astype(np.int8).tobytes(order="C")
            + b"".join(_scalar_bytes(v) for v in self.sk)
        )

    @classmethod
    def from_bytes(cls, data: bytes, group: str | Group | None = None) -> "FunctionalKeys":
        data = _as_bytes(data, "functional keys")
        group, k = _read_head(data, KEYS_MAGIC, "functional keys", group)
        if not 1 <= k <= MAX_KEYS:
            raise IPFEFormatError(f"functional keys: {k} keys outside 1..{MAX_KEYS}")
        if len(data) < _HEAD.size + _U32.size:
            raise IPFEFormatError("functional keys truncated")
        (n,) = _U32.unpack_from(data, _HEAD.size)
        _check_dim(n, "functional keys")
        offset = _HEAD.size + _U32.size
        expected = offset + DIGEST_SIZE + k * n + k * SCALAR_SIZE
        if len(data) != expected:
            raise IPFEFormatError(f"functional keys ({k} x {n}) must be {expected} bytes, got {len(data)}")
        digest = data[offset: offset + DIGEST_SIZE]
        offset += DIGEST_SIZE
        rows = np.frombuffer(data, dtype=np.int8, count=k * n, offset=offset).reshape(k, n)
        if np.any(rows == -128):
            raise IPFEFormatError(f"key coefficients must be in -{MAX_COEFF}..{MAX_COEFF}")
        offset += k * n
        sk = tuple(
            int.from_bytes(data[offset + j * SCALAR_SIZE: offset + (j + 1) * SCALAR_SIZE], "big")
            for j in range(k)
        )
        if not all(v < group.order for v in sk):
            raise IPFEFormatError("functional key scalars must be below q")
        return cls(group, digest, rows, sk)


def keygen(msk: MasterSecretKey, y) -> FunctionalKeys:
    """The functional key of one coefficient vector y (sk_y = <s, y> mod q)."""
    return derive_keys(msk, np.asarray(y).reshape(1, -1))


def derive_keys(msk: MasterSecretKey, rows) -> FunctionalKeys:
    """Functional keys of every row of `rows` (k, n), e.g. a miner's SML matrix."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != msk.n or rows.dtype.kind not in "iu":
        raise IPFEFormatError(f"key rows must be integers of shape (k, {msk.n}), got {rows.shape} {rows.dtype}")
    if not 1 <= rows.shape[0] <= MAX_KEYS:
        raise IPFEFormatError(f"{rows.shape[0]} key rows outside 1..{MAX_KEYS}")
    q = msk.group.order
    s = msk.s
    sk = tuple(
        sum(si * int(c) for si, c in zip(s, row) if c) % q for row in rows.astype(np.int64)
    )
    return FunctionalKeys(msk.group, msk.public_key.digest, rows, sk)


# --- ciphertexts -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Ciphertext:
    """ct = (ct_0 = r g, ct_i = r h_i + x_i g)."""

    group: Group
    c0: object
    c: tuple

    @property
    def n(self) -> int:
        return len(self.c)

    def body(self) -> bytes:
        """ct_0 | ct_1 .. ct_n, the part shared by both encodings."""
        enc = self.group.encode
        return enc(self.c0) + b"".join(enc(p) for p in self.c)

    def to_bytes(self) -> bytes:
        return _head(self.group, CT_MAGIC, self.n) + self.body()

    @classmethod
    def from_bytes(cls, data: bytes, group: str | Group | None = None) -> "Ciphertext":
        data = _as_bytes(data, "ciphertext")
        group, n = _read_head(data, CT_MAGIC, "ciphertext", group)
        _check_dim(n, "ciphertext")
        if len(data) != _HEAD.size + (n + 1) * group.element_size:
            raise IPFEFormatError(f"ciphertext of dimension {n} has the wrong length {len(data)}")
        return _decode_body(group, data, _HEAD.size, n)


def _decode_body(group: Group, data: bytes, offset: int, n: int) -> Ciphertext:
    points = _decode_points(group, data, offset, n + 1, "ciphertext")
    if group.is_identity(points[0]):
        raise IPFEFormatError("ciphertext ct_0 is the identity (r = 0 would expose x)")
    return Ciphertext(group, points[0], tuple(points[1:]))


def encrypt(mpk: MasterPublicKey, x, *, r: int | None = None) -> Ciphertext:
    """Encrypt the integer vector x (length n) with fresh randomness r (or the given r)."""
    group = mpk.group
    xs = _int_vector(x, mpk.n, "plaintext")
    if r is None:
        r = _random_nonzero_scalar(group.order)
    elif not 0 < r < group.order:
        raise ValueError("encryption randomness must be in 1..q-1")
    c = tuple(group.add(group.mul(h, r), group.mul_gen(xi)) for h, xi in zip(mpk.h, xs))
    return Ciphertext(group, group.mul_gen(r), c)


def encrypt_with_secret(msk: MasterSecretKey, x, *, r: int | None = None) -> Ciphertext:
    """The same ciphertext as encrypt(msk.public_key, x, r=r), computed by the data node, who
    knows s: ct_i = (r s_i + x_i) g, one fixed-base multiplication per entry instead of a
    variable-base one plus an addition."""
    group = msk.group
    q = group.order
    xs = _int_vector(x, msk.n, "plaintext")
    if r is None:
        r = _random_nonzero_scalar(q)
    elif not 0 < r < q:
        raise ValueError("encryption randomness must be in 1..q-1")
    c = tuple(group.mul_gen((r * si + xi) % q) for si, xi in zip(msk.s, xs))
    return Ciphertext(group, group.mul_gen(r), c)


@dataclass(frozen=True, eq=False)
class CiphertextBatch:
    """N ciphertexts of n-vectors under one master public key (named by its digest): an
    encrypted dataset, one ciphertext (with its own r) per sample."""

    group: Group
    mpk_digest: bytes
    items: tuple  # of Ciphertext

    @property
    def N(self) -> int:  # noqa: N802 - the usual name
        return len(self.items)

    @property
    def n(self) -> int:
        return self.items[0].n

    def to_bytes(self) -> bytes:
        return (
            _head(self.group, BATCH_MAGIC, self.N) + _U32.pack(self.n) + self.mpk_digest
            + b"".join(ct.body() for ct in self.items)
        )

    @classmethod
    def from_bytes(cls, data: bytes, group: str | Group | None = None) -> "CiphertextBatch":
        data = _as_bytes(data, "ciphertext batch")
        group, count = _read_head(data, BATCH_MAGIC, "ciphertext batch", group)
        if not 1 <= count <= MAX_BATCH:
            raise IPFEFormatError(f"ciphertext batch of {count} ciphertexts outside 1..{MAX_BATCH}")
        if len(data) < _HEAD.size + _U32.size + DIGEST_SIZE:
            raise IPFEFormatError("ciphertext batch truncated")
        (n,) = _U32.unpack_from(data, _HEAD.size)
        _check_dim(n, "ciphertext batch")
        if count * (n + 1) > MAX_BATCH_ELEMENTS:
            raise IPFEFormatError(f"ciphertext batch of {count} x {n + 1} points is too large")
        offset = _HEAD.size + _U32.size
        digest = data[offset: offset + DIGEST_SIZE]
        offset += DIGEST_SIZE
        item = (n + 1) * group.element_size
        if len(data) != offset + count * item:
            raise IPFEFormatError(
                f"ciphertext batch of {count} x {n} must be {offset + count * item} bytes, got {len(data)}"
            )
        items = tuple(_decode_body(group, data, offset + i * item, n) for i in range(count))
        return cls(group, digest, items)


# --- decryption --------------------------------------------------------------------------------


def combination(group: Group, points: Sequence, coeffs: Sequence[int], negated: Sequence | None = None):
    """sum_i coeffs_i points_i. Coefficients +1 and -1 cost an addition (of points_i or of its
    negation, taken from `negated` when given); others a scalar multiplication."""
    terms = []
    for i, c in enumerate(coeffs):
        if c == 0:
            continue
        if c == 1:
            terms.append(points[i])
        elif c == -1:
            terms.append(negated[i] if negated is not None else group.neg(points[i]))
        else:
            terms.append(group.mul(points[i], int(c)))
    return group.sum(terms)


def decrypt_element(ct: Ciphertext, y: Sequence[int], sk_y: int):
    """<x, y> g = sum_i y_i ct_i - sk_y ct_0 (before the discrete logarithm)."""
    group = ct.group
    ys = _int_vector(y, ct.n, "key coefficients")
    if not 0 <= sk_y < group.order:
        raise IPFEFormatError("functional key scalar must be in 0..q-1")
    total = combination(group, ct.c, ys)
    return group.add(total, group.mul(ct.c0, group.order - sk_y))


def decrypt(ct: Ciphertext, y: Sequence[int], sk_y: int, table) -> int:
    """<x, y>, by the discrete-log table `table` (a miner.ipfe.dlog.DlogTable); raises
    IPFEDecryptError if the result is not within the table's bound (a wrong key)."""
    value = table.solve(ct.group, [decrypt_element(ct, y, sk_y)])
    return int(value[0])


def decrypt_with_keys(ct: Ciphertext, keys: FunctionalKeys, table, *, mpk_digest: bytes | None = None) -> np.ndarray:
    """All k inner products of one ciphertext with a key set, int64 (k,)."""
    if mpk_digest is not None and mpk_digest != keys.mpk_digest:
        raise IPFEDecryptError("the functional keys belong to another master public key")
    if keys.n != ct.n:
        raise IPFEDecryptError(f"keys of dimension {keys.n} for a ciphertext of dimension {ct.n}")
    points = [decrypt_element(ct, row, sk) for row, sk in zip(keys.rows.astype(np.int64), keys.sk)]
    return table.solve(ct.group, points)
