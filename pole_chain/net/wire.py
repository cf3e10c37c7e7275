"""Request/response protocols for sync and blobs: ids, limits and byte formats.

Every exchange is one request and one response on a fresh libp2p stream, each a
varint-length-prefixed frame (py-libp2p's RequestResponse). A response is one code byte
then a body, so a server can say "bad request" or "not found" in words instead of just
resetting the stream; a client tells a refusal from a broken peer.

    status  /pole/status/1   request: rlp(status)            response: OK rlp(status)
    headers /pole/headers/1  request: rlp([start, count])    response: OK rlp([header...])
    blocks  /pole/blocks/1   request: rlp([start, count])    response: OK rlp([block...])
    blob    /pole/blob/1     request: 32-byte keccak digest  response: OK raw bytes
    data    /pole/blockdata/1  request: rlp([release digest prefix, model commitment])
                               response: OK rlp([release bytes, model bytes]) (b"" if absent)

A PoLe block names its release by a digest prefix and its model by a commitment (a hash of
model, miner and parent), neither of which is a content digest, so the blob protocol cannot
fetch them; the block-data protocol can, and the receiver checks both against the header.

Headers and blocks travel as the node's own RLP encodings, so this module needs no py-evm.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import rlp
from rlp.sedes import big_endian_int

from pole_chain.net.interfaces import ChainStatus

STATUS_PROTOCOL = "/pole/status/1"
HEADERS_PROTOCOL = "/pole/headers/1"
BLOCKS_PROTOCOL = "/pole/blocks/1"
BLOB_PROTOCOL = "/pole/blob/1"
BLOCK_DATA_PROTOCOL = "/pole/blockdata/1"

#: Requests are tiny; anything bigger is refused before it is read (the stream is reset).
MAX_REQUEST_SIZE = 1024
#: geth's MaxHeaderFetch / MaxBlockFetch.
MAX_HEADERS_PER_REQUEST = 192
MAX_BLOCKS_PER_REQUEST = 128
MAX_HEADERS_RESPONSE_SIZE = 2 * 1024 * 1024
MAX_BLOCKS_RESPONSE_SIZE = 16 * 1024 * 1024
DIGEST_SIZE = 32
#: vm_hooks.seal.RELEASE_DIGEST_PREFIX_SIZE is at most this (a header field is 32 bytes).
MAX_RELEASE_PREFIX_SIZE = 32


class Code(enum.IntEnum):
    """First byte of every response."""

    OK = 0
    NOT_FOUND = 1
    BAD_REQUEST = 2
    SERVER_ERROR = 3


class WireError(ValueError):
    """Bytes that are not a well-formed request or response of the protocol."""


class RefusedError(Exception):
    """The peer answered with an error code; `code` and the peer's reason are kept."""

    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(f"{code.name}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class RangeRequest:
    """Headers or blocks start, start+1, ..., start+count-1 of the canonical chain."""

    start: int
    count: int


def encode_response(code: Code, body: bytes) -> bytes:
    """One code byte then the body (for errors, a reason in UTF-8)."""
    return bytes([code]) + body


def error_response(code: Code, reason: str) -> bytes:
    """A refusal the client can read."""
    return encode_response(code, reason.encode()[:256])


def decode_response(payload: bytes) -> bytes:
    """The body of an OK response; RefusedError for an error code, WireError for junk."""
    if not payload:
        raise WireError("empty response")
    try:
        code = Code(payload[0])
    except ValueError as error:
        raise WireError(f"unknown response code {payload[0]}") from error
    if code is not Code.OK:
        raise RefusedError(code, payload[1:].decode(errors="replace"))
    return payload[1:]


def encode_status(status: ChainStatus) -> bytes:
    """rlp([genesis_hash, head_hash, head_number, total_score])."""
    return rlp.encode(
        [status.genesis_hash, status.head_hash, status.head_number, status.total_score]
    )


def decode_status(data: bytes) -> ChainStatus:
    """Parse a status; WireError unless both hashes are 32 bytes and numbers canonical."""
    items = _rlp_list(data, 4)
    genesis_hash, head_hash = _hash(items[0]), _hash(items[1])
    return ChainStatus(genesis_hash, head_hash, _uint(items[2]), _uint(items[3]))


def encode_range(request: RangeRequest) -> bytes:
    """rlp([start, count])."""
    return rlp.encode([request.start, request.count])


def decode_range(data: bytes, max_count: int) -> RangeRequest:
    """Parse a range request; WireError if malformed, count is 0 or above `max_count`."""
    items = _rlp_list(data, 2)
    start, count = _uint(items[0]), _uint(items[1])
    if not 0 < count <= max_count:
        raise WireError(f"count {count} outside 1..{max_count}")
    return RangeRequest(start, count)


def encode_items(items: list[bytes], max_size: int) -> bytes:
    """rlp([item...]) of as many leading items as fit in `max_size` (at least one).

    The items are already RLP encodings (headers, blocks), embedded as they are, so the
    client gets back exactly the bytes the server's chain holds.
    """
    kept: list[bytes] = []
    size = 0
    for item in items:
        if kept and size + len(item) + 16 > max_size:
            break
        kept.append(item)
        size += len(item) + 16
    return b"".join([_list_prefix(sum(map(len, kept))), *kept])


def decode_items(data: bytes) -> list[bytes]:
    """The RLP encodings of the items of a headers or blocks response."""
    try:
        return [rlp.encode(item) for item in rlp.decode(data, strict=True)]
    except (rlp.DecodingError, rlp.EncodingError, TypeError) as error:
        raise WireError(f"malformed item list: {error}") from error


def decode_digest(data: bytes) -> bytes:
    """A blob request is exactly one 32-byte digest."""
    if len(data) != DIGEST_SIZE:
        raise WireError(f"a blob request is a {DIGEST_SIZE}-byte digest, not {len(data)} bytes")
    return data


@dataclass(frozen=True)
class BlockData:
    """A PoLe block's release and model, as the block names them (empty: not held)."""

    release: bytes
    model: bytes


def encode_block_data_request(release_prefix: bytes, commitment: bytes) -> bytes:
    """rlp([release digest prefix, model commitment])."""
    return rlp.encode([release_prefix, commitment])


def decode_block_data_request(data: bytes) -> tuple[bytes, bytes]:
    """(release prefix, commitment); WireError unless 1..32 and 32 bytes."""
    prefix, commitment = _rlp_list(data, 2)
    if not 0 < len(prefix) <= MAX_RELEASE_PREFIX_SIZE:
        raise WireError(f"a release prefix is 1..{MAX_RELEASE_PREFIX_SIZE} bytes")
    return prefix, _hash(commitment)


def encode_block_data(data: BlockData) -> bytes:
    """rlp([release, model])."""
    return rlp.encode([data.release, data.model])


def decode_block_data(data: bytes) -> BlockData:
    """The release and model bytes of a block-data response."""
    release, model = _rlp_list(data, 2)
    return BlockData(release, model)


def _list_prefix(length: int) -> bytes:
    if length < 56:
        return bytes([0xC0 + length])
    length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0xF7 + len(length_bytes)]) + length_bytes


def _rlp_list(data: bytes, length: int) -> list[bytes]:
    try:
        items = rlp.decode(data, strict=True)
    except rlp.DecodingError as error:
        raise WireError(f"malformed RLP: {error}") from error
    if not isinstance(items, list) or len(items) != length:
        raise WireError(f"expected a list of {length} items")
    if not all(isinstance(item, bytes) for item in items):
        raise WireError("nested list where a value was expected")
    return items


def _uint(value: bytes) -> int:
    try:
        return big_endian_int.deserialize(value)
    except rlp.DeserializationError as error:
        raise WireError(f"bad integer: {error}") from error


def _hash(value: bytes) -> bytes:
    if len(value) != 32:
        raise WireError(f"a hash is 32 bytes, not {len(value)}")
    return value
