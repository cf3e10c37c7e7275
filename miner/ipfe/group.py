"""Prime-order groups for the IPFE scheme: one small protocol, two backends of secp256k1.

Both backends implement the same group, secp256k1 (order q, generator G of SEC 2), with the
same element encoding, so the scheme is written once, and ciphertexts, keys and discrete-log
tables made with one backend are read by the other:

    "coincurve"  libsecp256k1 through coincurve (C, the default)
    "py-ecc"     pure Python: py_ecc.secp256k1's Jacobian group law, our own point decoding

Element encoding (33 bytes, fixed length):

    0x02 | x   or   0x03 | x     SEC 1 compressed point: x big-endian, x < p, the prefix is
                                 2 + (y mod 2); x must be the abscissa of a curve point
    0x00 * 33                    the identity (SEC 1 writes it as one 0x00 byte; we pad it so
                                 every element has the same size)

Anything else is refused with IPFEFormatError, by both backends alike.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from .errors import IPFEFormatError

SECP256K1_P = 2**256 - 2**32 - 977
SECP256K1_Q = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
SECP256K1_GY = 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8
ELEMENT_SIZE = 33
IDENTITY_ENCODING = bytes(ELEMENT_SIZE)

#: Wire code of the group in every encoding of this package.
GROUP_IDS = {"secp256k1": 1}

Element = Any  # a backend's own representation; only the backend looks inside


class Group(Protocol):
    """What the scheme needs from a prime-order group (written additively: add, neg, mul)."""

    name: str  # the curve: "secp256k1"
    backend: str  # "coincurve" or "py-ecc"
    group_id: int  # wire code (GROUP_IDS)
    order: int  # q, prime
    element_size: int  # bytes of one encoded element

    def generator(self) -> Element: ...
    def identity(self) -> Element: ...
    def is_identity(self, a: Element) -> bool: ...
    def add(self, a: Element, b: Element) -> Element: ...
    def neg(self, a: Element) -> Element: ...
    def mul(self, a: Element, k: int) -> Element:
        """k * a for any integer k (reduced mod q)."""
    def mul_gen(self, k: int) -> Element:
        """k * G (backends may use a fixed-base method)."""
    def sum(self, points: Sequence[Element]) -> Element:
        """The sum of any number of elements (the identity for none)."""
    def encode(self, a: Element) -> bytes:
        """The 33-byte encoding (module doc)."""
    def decode(self, data: bytes) -> Element:
        """The element of a 33-byte encoding; IPFEFormatError if it is not one."""
    def eq(self, a: Element, b: Element) -> bool: ...


def _check_encoding(data: object) -> int | None:
    """Shared structural checks; the abscissa as an int, or None for the identity."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise IPFEFormatError(f"a group element must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) != ELEMENT_SIZE:
        raise IPFEFormatError(f"a group element is {ELEMENT_SIZE} bytes, got {len(data)}")
    if data == IDENTITY_ENCODING:
        return None
    if data[0] not in (2, 3):
        raise IPFEFormatError(f"group element prefix {data[0]:#04x} is not 0x02 or 0x03")
    x = int.from_bytes(data[1:], "big")
    if x >= SECP256K1_P:
        raise IPFEFormatError("group element abscissa is not below the field prime")
    return x


class CoincurveSecp256k1:
    """secp256k1 through coincurve (libsecp256k1, C). Elements: libsecp256k1 `secp256k1_pubkey *`
    structures (what coincurve.PublicKey wraps), or None for the identity (libsecp256k1 has no
    representation of the point at infinity). The calls go straight to coincurve's cffi binding
    of libsecp256k1 (the functions coincurve.PublicKey.combine_keys, multiply, format and the
    constructor call), which saves the wrapper objects on the decryption hot path."""

    name = "secp256k1"
    backend = "coincurve"
    group_id = GROUP_IDS["secp256k1"]
    order = SECP256K1_Q
    element_size = ELEMENT_SIZE

    def __init__(self) -> None:
        from coincurve._libsecp256k1 import ffi, lib
        from coincurve.context import GLOBAL_CONTEXT

        self._ffi, self._lib, self._ctx = ffi, lib, GLOBAL_CONTEXT.ctx
        self._compressed = lib.SECP256K1_EC_COMPRESSED
        self._g = self.mul_gen(1)

    def _new(self, copy_of=None):
        if copy_of is None:
            return self._ffi.new("secp256k1_pubkey *")
        return self._ffi.new("secp256k1_pubkey *", copy_of[0])

    def generator(self):
        return self._g

    def identity(self):
        return None

    def is_identity(self, a) -> bool:
        return a is None

    def add(self, a, b):
        return self.sum((a, b))

    def neg(self, a):
        if a is None:
            return None
        negated = self._new(a)
        self._lib.secp256k1_ec_pubkey_negate(self._ctx, negated)
        return negated

    def mul(self, a, k: int):
        k %= SECP256K1_Q
        if a is None or k == 0:
            return None
        product = self._new(a)
        if not self._lib.secp256k1_ec_pubkey_tweak_mul(self._ctx, product, k.to_bytes(32, "big")):
            raise RuntimeError("libsecp256k1 refused a scalar multiplication")  # pragma: no cover
        return product

    def mul_gen(self, k: int):
        k %= SECP256K1_Q
        if k == 0:
            return None
        point = self._new()
        if not self._lib.secp256k1_ec_pubkey_create(self._ctx, point, k.to_bytes(32, "big")):
            raise RuntimeError("libsecp256k1 refused a generator multiplication")  # pragma: no cover
        return point

    def sum(self, points):
        keys = [p for p in points if p is not None]
        if not keys:
            return None
        if len(keys) == 1:
            return keys[0]
        total = self._new()
        if not self._lib.secp256k1_ec_pubkey_combine(self._ctx, total, keys, len(keys)):
            return None  # libsecp256k1 refuses a sum that is the point at infinity
        return total

    def encode(self, a) -> bytes:
        if a is None:
            return IDENTITY_ENCODING
        out = self._ffi.new("unsigned char[33]")
        size = self._ffi.new("size_t *", ELEMENT_SIZE)
        self._lib.secp256k1_ec_pubkey_serialize(self._ctx, out, size, a, self._compressed)
        return bytes(self._ffi.buffer(out, ELEMENT_SIZE))

    def decode(self, data):
        if _check_encoding(data) is None:
            return None
        point = self._new()
        if not self._lib.secp256k1_ec_pubkey_parse(self._ctx, point, bytes(data), ELEMENT_SIZE):
            raise IPFEFormatError("group element is not a point of secp256k1")
        return point

    def eq(self, a, b) -> bool:
        return self.encode(a) == self.encode(b)


class PyEccSecp256k1:
    """secp256k1 in pure Python through py_ecc.secp256k1 (Jacobian add, double, multiply).

    Elements: Jacobian triples (X, Y, Z) over F_p, the identity any triple with Y == 0 (py-ecc's
    convention; secp256k1 has no point of order 2, so no other point has Y == 0). Affine
    conversion uses Python's pow(z, -1, p); decoding takes the square root with
    pow(., (p + 1) / 4, p) (p = 3 mod 4)."""

    name = "secp256k1"
    backend = "py-ecc"
    group_id = GROUP_IDS["secp256k1"]
    order = SECP256K1_Q
    element_size = ELEMENT_SIZE

    _IDENTITY = (0, 0, 1)

    def __init__(self) -> None:
        from py_ecc.secp256k1 import secp256k1 as curve

        if (curve.P, curve.N, curve.Gx, curve.Gy) != (
            SECP256K1_P, SECP256K1_Q, SECP256K1_GX, SECP256K1_GY,
        ):  # pragma: no cover - a different py-ecc would be a different group
            raise RuntimeError("py_ecc.secp256k1 does not have the secp256k1 parameters")
        self._curve = curve
        self._g = (SECP256K1_GX, SECP256K1_GY, 1)

    def generator(self):
        return self._g

    def identity(self):
        return self._IDENTITY

    def is_identity(self, a) -> bool:
        return not a[1]

    def add(self, a, b):
        return self._curve.jacobian_add(a, b)

    def neg(self, a):
        if not a[1]:
            return self._IDENTITY
        return (a[0], SECP256K1_P - a[1], a[2])

    def mul(self, a, k: int):
        k %= SECP256K1_Q
        if k == 0 or not a[1]:
            return self._IDENTITY
        return self._curve.jacobian_multiply(a, k)

    def mul_gen(self, k: int):
        return self.mul(self._g, k)

    def sum(self, points):
        add = self._curve.jacobian_add
        total = self._IDENTITY
        for p in points:
            total = add(total, p)
        return total

    def affine(self, a) -> tuple[int, int] | None:
        if not a[1]:
            return None
        x, y, z = a
        zinv = pow(z, -1, SECP256K1_P)
        zinv2 = zinv * zinv % SECP256K1_P
        return x * zinv2 % SECP256K1_P, y * zinv2 * zinv % SECP256K1_P

    def encode(self, a) -> bytes:
        xy = self.affine(a)
        if xy is None:
            return IDENTITY_ENCODING
        x, y = xy
        return bytes([2 + (y & 1)]) + x.to_bytes(32, "big")

    def decode(self, data):
        x = _check_encoding(data)
        if x is None:
            return self._IDENTITY
        rhs = (x * x * x + 7) % SECP256K1_P
        y = pow(rhs, (SECP256K1_P + 1) // 4, SECP256K1_P)
        if y * y % SECP256K1_P != rhs:
            raise IPFEFormatError("group element is not a point of secp256k1")
        if (y & 1) != (data[0] & 1):
            y = SECP256K1_P - y
        return (x, y, 1)

    def eq(self, a, b) -> bool:
        return self.encode(a) == self.encode(b)


BACKENDS = ("coincurve", "py-ecc")
DEFAULT_BACKEND = "coincurve"
_INSTANCES: dict[str, Group] = {}


def get_group(backend: str = DEFAULT_BACKEND) -> Group:
    """The secp256k1 group of one backend ("coincurve", the default, or "py-ecc")."""
    if backend not in _INSTANCES:
        if backend == "coincurve":
            _INSTANCES[backend] = CoincurveSecp256k1()
        elif backend == "py-ecc":
            _INSTANCES[backend] = PyEccSecp256k1()
        else:
            raise ValueError(f"unknown IPFE backend {backend!r}; choose from {BACKENDS}")
    return _INSTANCES[backend]
