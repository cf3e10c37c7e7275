"""The errors of the IPFE core. Decoders raise only IPFEFormatError on malformed input."""

from __future__ import annotations


class IPFEError(Exception):
    """Base class of every error this package raises on purpose."""


class IPFEFormatError(IPFEError, ValueError):
    """Bytes (or in-memory values) that break the encoding rules: wrong length, magic, version or
    group, a point not on the curve, a scalar >= q, a coefficient out of range, trailing bytes."""


class IPFEBoundError(IPFEError, ValueError):
    """A task whose inner products could exceed what the discrete-log table covers."""


class IPFEDecryptError(IPFEError):
    """Decryption gave a group element that is not g^v for any |v| <= the table's bound: a key
    that does not belong to this ciphertext (another master key, a tampered key or row), a
    tampered ciphertext, or an inner product beyond the bound."""
