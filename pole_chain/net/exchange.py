"""Status, header-range, block-range and blob requests: the server and the client side.

Servers answer from the node's ChainView (on a worker thread) and refuse a malformed
request with BAD_REQUEST and a reason, penalising its sender; an oversized request never
reaches them (RequestResponse resets the stream after `MAX_REQUEST_SIZE` bytes). Clients
check what they get: a blob must hash to the digest asked for, a range must not hold more
items than asked; a peer that fails either is penalised and the next one is asked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio
from eth_utils import keccak
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.request_response import (
    BytesCodec,
    RequestContext,
    RequestResponse,
    RequestResponseConfig,
    RequestResponseError,
)

from pole_chain.net import wire
from pole_chain.net.interfaces import ChainStatus, ChainView
from pole_chain.net.peer_score import Offence

logger = logging.getLogger(__name__)

T = TypeVar("T")
Penalise = Callable[[str, Offence], None]
StatusListener = Callable[[str, ChainStatus], Awaitable[None]]
_CODEC = BytesCodec()


class Exchange:
    """The five request/response protocols of one host."""

    def __init__(
        self,
        host: IHost,
        chain: ChainView,
        penalise: Penalise,
        on_status: StatusListener,
        *,
        timeout: float,
        max_blob_size: int,
    ) -> None:
        self._rr = RequestResponse(host)
        self._chain = chain
        self._penalise = penalise
        self._on_status = on_status
        self._timeout = timeout
        self._max_blob_size = max_blob_size

    def register(self) -> None:
        """Install the five stream handlers on the host."""
        handlers = {
            wire.STATUS_PROTOCOL: (self._serve_status, 1024),
            wire.HEADERS_PROTOCOL: (self._serve_headers, wire.MAX_HEADERS_RESPONSE_SIZE),
            wire.BLOCKS_PROTOCOL: (self._serve_blocks, wire.MAX_BLOCKS_RESPONSE_SIZE),
            wire.BLOB_PROTOCOL: (self._serve_blob, self._max_blob_size + 1),
            wire.BLOCK_DATA_PROTOCOL: (self._serve_block_data, 2 * self._max_blob_size + 64),
        }
        for protocol, (handler, max_response) in handlers.items():
            self._rr.set_handler(
                TProtocol(protocol), handler, _CODEC, self._config(max_response)
            )

    # --- client side -----------------------------------------------------------------

    async def status(self, peer: ID) -> ChainStatus:
        """Exchange statuses with `peer`: ours goes in the request, theirs comes back."""
        ours = await trio.to_thread.run_sync(self._chain.head)
        body = await self._request(peer, wire.STATUS_PROTOCOL, wire.encode_status(ours), 1024)
        theirs = self._parse(peer, wire.decode_status, body)
        await self._on_status(str(peer), theirs)
        return theirs

    async def headers(self, peer: ID, start: int, count: int) -> list[bytes]:
        """Up to `count` RLP headers from `start` on `peer`'s canonical chain."""
        return await self._range(
            peer, wire.HEADERS_PROTOCOL, start, count, wire.MAX_HEADERS_RESPONSE_SIZE
        )

    async def blocks(self, peer: ID, start: int, count: int) -> list[bytes]:
        """Up to `count` RLP blocks from `start` on `peer`'s canonical chain."""
        return await self._range(
            peer, wire.BLOCKS_PROTOCOL, start, count, wire.MAX_BLOCKS_RESPONSE_SIZE
        )

    async def fetch_blob(self, digest: bytes, peers: Sequence[ID]) -> bytes | None:
        """Ask each peer in turn for the blob; the first bytes that hash to `digest` win."""
        for peer in peers:
            try:
                data = await self._request(
                    peer, wire.BLOB_PROTOCOL, digest, self._max_blob_size + 1
                )
            except wire.RefusedError as refusal:
                logger.debug("peer %s has no blob %s: %s", peer, digest.hex(), refusal)
                continue
            except RequestResponseError as error:
                logger.info("blob %s from %s failed: %s", digest.hex(), peer, error)
                continue
            if keccak(data) == digest:
                return data
            logger.warning("peer %s sent wrong bytes for blob %s", peer, digest.hex())
            self._penalise(str(peer), Offence.WRONG_BLOB)
        return None

    async def fetch_block_data(
        self,
        release_prefix: bytes,
        commitment: bytes,
        matches: Callable[[bytes, bytes], bool],
        peers: Sequence[ID],
    ) -> wire.BlockData | None:
        """A PoLe block's release and model from the first peer holding both, checked.

        The release must hash to a digest starting with `release_prefix`; release and model
        must pass `matches(release, model)` (the node recomputes the commitment from the
        model, the block's miner and the release's anchor). A peer failing either check is
        penalised as for a wrong blob.
        """
        request = wire.encode_block_data_request(release_prefix, commitment)
        for peer in peers:
            try:
                body = await self._request(
                    peer, wire.BLOCK_DATA_PROTOCOL, request, 2 * self._max_blob_size + 64
                )
                data = self._parse(peer, wire.decode_block_data, body)
            except (wire.RefusedError, wire.WireError, RequestResponseError) as error:
                logger.info("block data from %s failed: %s", peer, error)
                continue
            if not data.release or not data.model:
                continue  # this peer lacks a part; another may hold both
            if keccak(data.release).startswith(release_prefix) and matches(data.release, data.model):
                return data
            logger.warning("peer %s sent block data that does not match the block", peer)
            self._penalise(str(peer), Offence.WRONG_BLOB)
        return None

    async def _range(
        self, peer: ID, protocol: str, start: int, count: int, max_response: int
    ) -> list[bytes]:
        request = wire.encode_range(wire.RangeRequest(start, count))
        body = await self._request(peer, protocol, request, max_response)
        items = self._parse(peer, wire.decode_items, body)
        if len(items) > count:
            self._penalise(str(peer), Offence.BAD_RESPONSE)
            raise wire.WireError(f"asked for {count} items, got {len(items)}")
        return items

    async def _request(self, peer: ID, protocol: str, payload: bytes, max_response: int) -> bytes:
        """One exchange; RefusedError, WireError or RequestResponseError on failure."""
        response = await self._rr.send_request(
            peer, [TProtocol(protocol)], payload, _CODEC, self._config(max_response)
        )
        return wire.decode_response(response)

    def _parse(self, peer: ID, parse: Callable[[bytes], T], body: bytes) -> T:
        try:
            return parse(body)
        except wire.WireError:
            self._penalise(str(peer), Offence.BAD_RESPONSE)
            raise

    def _config(self, max_response: int) -> RequestResponseConfig:
        return RequestResponseConfig(
            timeout=self._timeout,
            max_request_size=wire.MAX_REQUEST_SIZE,
            max_response_size=max_response,
        )

    # --- server side -----------------------------------------------------------------

    async def _serve_status(self, request: bytes, context: RequestContext) -> bytes:
        try:
            theirs = wire.decode_status(request)
        except wire.WireError as error:
            return self._bad_request(context, error)
        await self._on_status(str(context.peer_id), theirs)
        ours = await trio.to_thread.run_sync(self._chain.head)
        return wire.encode_response(wire.Code.OK, wire.encode_status(ours))

    async def _serve_headers(self, request: bytes, context: RequestContext) -> bytes:
        return await self._serve_range(
            request, context, self._chain.headers,
            wire.MAX_HEADERS_PER_REQUEST, wire.MAX_HEADERS_RESPONSE_SIZE,
        )

    async def _serve_blocks(self, request: bytes, context: RequestContext) -> bytes:
        return await self._serve_range(
            request, context, self._chain.blocks,
            wire.MAX_BLOCKS_PER_REQUEST, wire.MAX_BLOCKS_RESPONSE_SIZE,
        )

    async def _serve_range(
        self,
        request: bytes,
        context: RequestContext,
        read: Callable[[int, int], Sequence[bytes]],
        max_count: int,
        max_size: int,
    ) -> bytes:
        try:
            wanted = wire.decode_range(request, max_count)
        except wire.WireError as error:
            return self._bad_request(context, error)
        items = await trio.to_thread.run_sync(read, wanted.start, wanted.count)
        body = wire.encode_items(list(items)[: wanted.count], max_size - 1)
        return wire.encode_response(wire.Code.OK, body)

    async def _serve_blob(self, request: bytes, context: RequestContext) -> bytes:
        try:
            digest = wire.decode_digest(request)
        except wire.WireError as error:
            return self._bad_request(context, error)
        data = await trio.to_thread.run_sync(self._chain.blob, digest)
        if data is None:
            return wire.error_response(wire.Code.NOT_FOUND, f"no blob {digest.hex()}")
        if len(data) > self._max_blob_size:
            return wire.error_response(wire.Code.SERVER_ERROR, "blob above this node's limit")
        return wire.encode_response(wire.Code.OK, data)

    async def _serve_block_data(self, request: bytes, context: RequestContext) -> bytes:
        try:
            prefix, commitment = wire.decode_block_data_request(request)
        except wire.WireError as error:
            return self._bad_request(context, error)
        release, model = await trio.to_thread.run_sync(self._chain.block_data, prefix, commitment)
        if len(release) > self._max_blob_size or len(model) > self._max_blob_size:
            return wire.error_response(wire.Code.SERVER_ERROR, "block data above this node's limit")
        return wire.encode_response(wire.Code.OK, wire.encode_block_data(wire.BlockData(release, model)))

    def _bad_request(self, context: RequestContext, error: Exception) -> bytes:
        logger.info("bad %s request from %s: %s", context.protocol_id, context.peer_id, error)
        self._penalise(str(context.peer_id), Offence.MALFORMED_REQUEST)
        return wire.error_response(wire.Code.BAD_REQUEST, str(error))
