"""Signed protocol messages of one PoLe height: solution announcements and releases.

A miner that has trained a model gossips a `SolutionAnnouncement` (commit); the task's
poster answers with a `Release` (the test set's digest and the admitted commitments); the
block that wins the height carries `Release.digest` in its seal. See docs/MESSAGES.md.

The messages are transport-neutral: `encode()` gives the canonical bytes that travel
unchanged over JSON-RPC (as hex) or a peer-to-peer network, and `decode()` accepts exactly
those bytes and nothing else, so every node computes the same digest for the same message.

    encoding = TYPE_BYTE || rlp([version, chain_id, task_id, ..., signature])

`decode()` checks structure only; call `verify()` before trusting, relaying or storing.
"""

from __future__ import annotations

from typing import ClassVar, Iterable, Mapping, TypeVar, Union

import rlp
from rlp.codec import consume_length_prefix
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature as _EthKeysBadSignature
from eth_utils import encode_hex, keccak, to_canonical_address
from rlp.sedes import Binary, CountableList, big_endian_int

MESSAGE_VERSION = 1
ANNOUNCEMENT_TYPE = 0x01
RELEASE_TYPE = 0x02
# Signing domain: keccak(SIGNING_TAG || type byte || chain id as 8 bytes || unsigned encoding),
# so a signature over one message can never be replayed as another type or on another chain.
SIGNING_TAG = b"PoLe"

MAX_MESSAGE_SIZE = 8 * 1024
MAX_ADMITTED = 64
MAX_BPS = 10_000
MAX_UINT64 = 2**64 - 1  # task ids travel in the header nonce (8 bytes); chain ids fit too

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

_HASH32 = Binary.fixed_length(32)
_ADDRESS = Binary.fixed_length(20)
_SIGNATURE = Binary.fixed_length(65)


class MessageError(ValueError):
    """A message is malformed, non-canonical or not valid for this protocol version."""


class BadSignature(MessageError):
    """A message's signature does not recover to the miner or poster it names."""


def commitment_for(model_blob: bytes, coinbase: bytes, anchor_hash: bytes) -> bytes:
    """The model commitment a block's mix_hash carries: keccak(model || coinbase || anchor).

    Binding the coinbase and the task's anchor block means a copied commitment is worthless
    to anyone else and for any other task or anchor; it stays valid on every descendant of
    the anchor, so a miner whose parent was reorged away re-seals the same model.
    """
    _require_length("coinbase", coinbase, 20)
    _require_length("anchor_hash", anchor_hash, 32)
    return keccak(bytes(model_blob) + coinbase + anchor_hash)


MessageT = TypeVar("MessageT", bound="_SignedMessage")


class _SignedMessage:
    """Encoding, signing and checks shared by both message types.

    Subclasses are rlp.Serializable with `signature` as their last field and a
    `_signer_field` naming the address the signature must recover to.
    """

    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    VERSION: ClassVar[int] = MESSAGE_VERSION  # a type whose fields changed has its own
    _signer_field: ClassVar[str]
    _meta: ClassVar[type]

    version: int
    chain_id: int
    task_id: int
    anchor_hash: bytes
    signature: bytes

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Every instance is well-formed, whether built by sign(), decode() or copy().
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._check(self.as_dict())  # type: ignore[attr-defined]

    # -- construction -------------------------------------------------------------

    @classmethod
    def _signed(cls: type[MessageT], private_key: bytes | str, **fields: object) -> MessageT:
        account = Account.from_key(private_key)
        fields[cls._signer_field] = to_canonical_address(account.address)
        cls._check(fields, signed=False)
        signing_hash = cls._signing_hash_of(fields)
        signed = account.sign_message(encode_defunct(primitive=signing_hash))
        return cls(**fields, signature=bytes(signed.signature))

    @classmethod
    def decode(cls: type[MessageT], data: bytes) -> MessageT:
        """Parse canonical bytes of this message type; raise MessageError otherwise."""
        message = decode(data)
        if not isinstance(message, cls):
            raise MessageError(f"expected a {cls.NAME}, got a {message.NAME}")
        return message

    # -- encoding -----------------------------------------------------------------

    def encode(self) -> bytes:
        """Canonical bytes: type byte followed by the RLP list of all fields."""
        return bytes([self.TYPE]) + rlp.encode(self, cache=False)

    def unsigned_encoding(self) -> bytes:
        """The encoding with the signature field left out: what the signature covers."""
        return self._unsigned_encoding_of(self.as_dict())  # type: ignore[attr-defined]

    @property
    def signing_hash(self) -> bytes:
        """The 32 bytes signed with EIP-191 (personal_sign), domain-separated."""
        return self._signing_hash_of(self.as_dict())  # type: ignore[attr-defined]

    @classmethod
    def _unsigned_encoding_of(cls, fields: dict[str, object]) -> bytes:
        unsigned = cls._meta.fields[:-1]  # every field but the signature
        values = [fields[name] for name, _ in unsigned]
        sedes = rlp.sedes.List([field_sedes for _, field_sedes in unsigned])
        return bytes([cls.TYPE]) + rlp.encode(values, sedes=sedes)

    @classmethod
    def _signing_hash_of(cls, fields: dict[str, object]) -> bytes:
        chain_id = fields["chain_id"]
        assert isinstance(chain_id, int)
        domain = SIGNING_TAG + bytes([cls.TYPE]) + chain_id.to_bytes(8, "big")
        return keccak(domain + cls._unsigned_encoding_of(fields))

    @property
    def digest(self) -> bytes:
        """keccak of the full encoding: the message's identity (a seal carries a release's)."""
        return keccak(self.encode())

    @property
    def signer(self) -> bytes:
        """The 20-byte address that claims to have signed (miner or poster)."""
        return getattr(self, self._signer_field)

    # -- checks -------------------------------------------------------------------

    def verify(self: MessageT, chain_id: int | None = None) -> MessageT:
        """Check the signature recovers to the claimed signer (and the chain id if given).

        Returns the message, so `Release.decode(raw).verify(CHAIN_ID)` reads as one step.
        """
        if chain_id is not None and self.chain_id != chain_id:
            raise MessageError(f"{self.NAME} is for chain {self.chain_id}, expected {chain_id}")
        signable = encode_defunct(primitive=self.signing_hash)
        try:
            recovered = to_canonical_address(
                Account.recover_message(signable, signature=self.signature)
            )
        except (_EthKeysBadSignature, ValueError) as error:
            raise BadSignature(f"{self.NAME} signature does not recover: {error}") from error
        if recovered != self.signer:
            raise BadSignature(
                f"{self.NAME} signed by {encode_hex(recovered)}, "
                f"claims {self._signer_field} {encode_hex(self.signer)}"
            )
        return self

    @classmethod
    def _check(cls, f: dict[str, object], signed: bool = True) -> None:
        """Field rules shared by both types, then the type's own (`_check_fields`)."""
        if f["version"] != cls.VERSION:
            raise MessageError(f"unsupported {cls.NAME} version {f['version']!r}")
        _require_uint("chain_id", f["chain_id"], 1, MAX_UINT64)
        _require_uint("task_id", f["task_id"], 1, MAX_UINT64)
        _require_length("anchor_hash", f["anchor_hash"], 32)
        cls._check_fields(f)
        _require_length(cls._signer_field, f[cls._signer_field], 20)
        if signed:
            _check_signature_shape(f["signature"])

    @classmethod
    def _check_fields(cls, f: dict[str, object]) -> None:
        """Type-specific field checks."""

    def __repr__(self) -> str:
        def show(value: object) -> str:
            if isinstance(value, bytes):
                return encode_hex(value)
            if isinstance(value, tuple):
                return "[" + ", ".join(show(item) for item in value) + "]"
            return repr(value)

        fields = self.as_dict().items()  # type: ignore[attr-defined]
        return f"{self.NAME}(" + ", ".join(f"{k}={show(v)}" for k, v in fields) + ")"

    def __eq__(self, other: object) -> bool:
        # rlp.Serializable compares hash() values of any two Serializables; be exact.
        return type(self) is type(other) and tuple(self) == tuple(other)  # type: ignore[arg-type]

    def __hash__(self) -> int:
        return hash((self.TYPE, tuple(self)))  # type: ignore[arg-type]


class SolutionAnnouncement(_SignedMessage, rlp.Serializable):
    """A miner's commit: "I trained a model for this task at this anchor; here is its hash".

    The weights stay private until the poster's release admits the commitment, so no one
    can copy them in the meantime.
    """

    TYPE = ANNOUNCEMENT_TYPE
    NAME = "SolutionAnnouncement"
    _signer_field = "miner"

    fields = (
        ("version", big_endian_int),
        ("chain_id", big_endian_int),
        ("task_id", big_endian_int),
        ("anchor_hash", _HASH32),
        ("model_commitment", _HASH32),
        ("train_bps", big_endian_int),
        ("miner", _ADDRESS),
        ("signature", _SIGNATURE),
    )
    model_commitment: bytes
    train_bps: int
    miner: bytes

    @classmethod
    def sign(
        cls,
        *,
        chain_id: int,
        task_id: int,
        anchor_hash: bytes,
        model_commitment: bytes,
        train_bps: int,
        private_key: bytes | str,
    ) -> SolutionAnnouncement:
        """Build and sign an announcement; the miner is the key's address."""
        return cls._signed(
            private_key,
            version=MESSAGE_VERSION,
            chain_id=chain_id,
            task_id=task_id,
            anchor_hash=anchor_hash,
            model_commitment=model_commitment,
            train_bps=train_bps,
        )

    @classmethod
    def _check_fields(cls, f: dict[str, object]) -> None:
        _require_length("model_commitment", f["model_commitment"], 32)
        _require_uint("train_bps", f["train_bps"], 0, MAX_BPS)


class Release(_SignedMessage, rlp.Serializable):
    """The poster's answer: the test set (by digest) and which commitments take part.

    Every node uses the poster's `admitted` list, so all agree on who may seal, however
    late an announcement reached them.
    """

    TYPE = RELEASE_TYPE
    NAME = "Release"
    _signer_field = "poster"

    fields = (
        ("version", big_endian_int),
        ("chain_id", big_endian_int),
        ("task_id", big_endian_int),
        ("anchor_hash", _HASH32),
        ("test_set_digest", _HASH32),
        ("admitted", CountableList(_HASH32, max_length=MAX_ADMITTED)),
        ("poster", _ADDRESS),
        ("signature", _SIGNATURE),
    )
    test_set_digest: bytes
    admitted: tuple[bytes, ...]
    poster: bytes

    @classmethod
    def sign(
        cls,
        *,
        chain_id: int,
        task_id: int,
        anchor_hash: bytes,
        test_set_digest: bytes,
        admitted: Iterable[bytes],
        private_key: bytes | str,
    ) -> Release:
        """Build and sign a release; `admitted` is sorted and deduplicated here."""
        return cls._signed(
            private_key,
            version=MESSAGE_VERSION,
            chain_id=chain_id,
            task_id=task_id,
            anchor_hash=anchor_hash,
            test_set_digest=test_set_digest,
            admitted=tuple(sorted(set(admitted))),
        )

    def admits(self, commitment: bytes) -> bool:
        """Whether a block with this model commitment may answer this release."""
        return commitment in self.admitted

    @classmethod
    def _check_fields(cls, f: dict[str, object]) -> None:
        _require_length("test_set_digest", f["test_set_digest"], 32)
        admitted = f["admitted"]
        if not isinstance(admitted, tuple):
            raise MessageError(f"admitted must be a tuple, got {type(admitted).__name__}")
        if len(admitted) > MAX_ADMITTED:
            raise MessageError(f"admitted has {len(admitted)} entries, limit {MAX_ADMITTED}")
        for commitment in admitted:
            _require_length("admitted commitment", commitment, 32)
        for earlier, later in zip(admitted, admitted[1:]):
            if not earlier < later:
                raise MessageError("admitted must be strictly ascending (sorted, no duplicates)")


Message = Union[SolutionAnnouncement, Release]
_TYPES: dict[int, type[SolutionAnnouncement] | type[Release]] = {
    ANNOUNCEMENT_TYPE: SolutionAnnouncement,
    RELEASE_TYPE: Release,
}


def decode(data: bytes) -> Message:
    """Parse canonical message bytes of either type; anything else raises MessageError.

    Strict: size limit first (before any parsing work), then known type byte, well-formed
    minimal RLP without trailing bytes, supported version, exact field count and lengths,
    and each type's field rules, and the bytes must re-encode to themselves. The signature
    is not checked here: call verify().
    """
    return decode_typed(data, _TYPES, MAX_MESSAGE_SIZE)


def decode_typed(data: bytes, types: Mapping[int, type], max_size: int):
    """`decode`'s rules for any family of signed message types (a type byte -> class map)
    with its own size limit: the one decoder every signed PoLe message goes through."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageError(f"message must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise MessageError(f"message is {len(data)} bytes, limit {max_size}")
    if not data:
        raise MessageError("empty message")
    cls = types.get(data[0])
    if cls is None:
        raise MessageError(f"unknown message type 0x{data[0]:02x}")
    try:
        _, _, length, start = consume_length_prefix(data, 1)
    except (rlp.DecodingError, IndexError) as error:  # IndexError: the prefix is cut short
        raise MessageError(f"malformed {cls.NAME}: {error}") from error
    if start + length > len(data):  # said apart from other junk: pyrlp calls it "-N superfluous"
        raise MessageError(
            f"malformed {cls.NAME}: truncated, its body declares {length} bytes and "
            f"{len(data) - start} arrived"
        )
    try:
        items = rlp.decode(data[1:], strict=True)
    except rlp.DecodingError as error:
        raise MessageError(f"malformed {cls.NAME}: {error}") from error
    if not isinstance(items, list) or not items:
        raise MessageError(f"malformed {cls.NAME}: body is not a non-empty RLP list")
    # Read the version before the field layout, so a newer message gets a clear reason.
    if not isinstance(items[0], bytes):
        raise MessageError(f"malformed {cls.NAME}: version is a list")
    try:
        version = big_endian_int.deserialize(items[0])
    except rlp.DeserializationError as error:
        raise MessageError(f"malformed {cls.NAME} version: {error}") from error
    if version != cls.VERSION:
        raise MessageError(f"unsupported {cls.NAME} version {version}")
    try:
        message = cls.deserialize(items)
    except (rlp.DeserializationError, TypeError) as error:
        # rlp's integer sedes raises TypeError, not DeserializationError, on a nested list.
        raise MessageError(f"malformed {cls.NAME}: {error}") from error
    # rlp's integer sedes reads an empty list as 0; any such alternative spelling would give
    # one message two digests, so the bytes must be exactly the message's own encoding.
    if message.encode() != data:
        raise MessageError(f"non-canonical {cls.NAME} encoding")
    return message


def _require_length(name: str, value: object, length: int) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        shown = len(value) if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise MessageError(f"{name} must be {length} bytes, got {shown}")


def _require_uint(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise MessageError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _check_signature_shape(signature: object) -> None:
    """65 bytes r || s || v with v in {27, 28}, 0 < r < n and 0 < s <= n/2 (EIP-2 low s).

    Low s and a fixed v make the encoding of a signed message unique, so its digest is too.
    """
    _require_length("signature", signature, 65)
    assert isinstance(signature, bytes)
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise MessageError(f"signature v must be 27 or 28, got {v}")
    if not 0 < r < SECP256K1_N:
        raise MessageError("signature r out of range")
    if not 0 < s <= SECP256K1_N // 2:
        raise MessageError("signature s out of range (must be low s, EIP-2)")
