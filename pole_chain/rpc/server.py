"""The HTTP transport: JSON-RPC request bodies in over POST, response bodies out.

stdlib `ThreadingHTTPServer` (one thread per connection, HTTP/1.1 keep-alive) rather than
aiohttp: every handler takes the node lock and runs py-evm synchronously, so an event loop
would only add hand-offs to a thread pool; the stdlib server needs no dependency and is
easy to stop from a test. See docs/RPC.md.

Limits: bodies over `max_body_size` get HTTP 413 with a JSON-RPC error body; a connection
idle for IDLE_TIMEOUT seconds is closed. Nothing raised while answering ever stops the server.

Other HTTP apps share the port by composition: `RpcServer.mount(prefix, app)` hands GET and
POST requests under `prefix` to `app.handle(method, path, body) -> HttpReply` (the node's
dashboard, pole_chain/dashboard, is mounted so by `pole node`); this module imports none of
them. POST anywhere else stays JSON-RPC; with a mount, a browser's GET / (Accept: text/html)
redirects to its prefix, any other GET / is still answered 405 (JSON-RPC needs POST).
"""
from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Protocol

from pole_chain.rpc import admin_api, dev_api, eth_api, pole_api
from pole_chain.rpc.dispatch import INTERNAL_ERROR, INVALID_REQUEST, Dispatcher, MethodTable
from pole_chain.rpc.filters import FilterStore

if TYPE_CHECKING:
    from pole_chain.node.node import Node

log = logging.getLogger("pole.rpc.http")

#: Largest request body accepted (bytes).
#: Refused bodies up to this size are read and dropped so the 413 answer reaches the client.
MAX_DISCARD = 64 * 1024 * 1024
MAX_BODY_SIZE = 8 * 1024 * 1024  # blobs (datasets, models) travel as hex in pole_putBlob
#: Seconds a connection may sit idle (or dribble a request) before it is closed.
IDLE_TIMEOUT = 60
DEFAULT_RPC_PORT = 8545

#: Every method table the server answers from; a new *_api module adds its table here.
METHOD_TABLES: tuple[MethodTable, ...] = (
    eth_api.METHODS, pole_api.METHODS, dev_api.METHODS, admin_api.METHODS
)


@dataclass
class RpcContext:
    """What every handler receives first: the node and this server's installed filters."""

    node: Node
    filters: FilterStore


@dataclass(frozen=True)
class HttpReply:
    """What a mounted app answers: status, body, content type, extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class HttpApp(Protocol):
    """An app mounted on the RPC port (`RpcServer.mount`)."""

    def handle(self, method: str, path: str, body: bytes) -> HttpReply: ...


def _error_body(code: int, message: str) -> bytes:
    payload = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return json.dumps(payload).encode()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pole"
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stall
    server: _HTTPServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._reply(
                HTTPStatus.LENGTH_REQUIRED,
                _error_body(INVALID_REQUEST, "invalid request: Content-Length is required"),
                close=True,
            )
            return
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError(length_header)
        except ValueError:
            self._reply(
                HTTPStatus.BAD_REQUEST,
                _error_body(INVALID_REQUEST, "invalid request: bad Content-Length"),
                close=True,
            )
            return
        limit = self.server.max_body_size
        if length > limit:
            self._discard(length)
            self._reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                _error_body(
                    INVALID_REQUEST,
                    f"invalid request: body of {length} bytes exceeds the limit of {limit}",
                ),
                close=True,
            )
            return
        body = self.rfile.read(length)
        if self._mounted("POST", body):
            return
        try:
            response = self.server.dispatcher.handle_body(body)
        except Exception:  # the dispatcher catches handler errors; this is a last resort
            log.exception("answering a request failed")
            response = _error_body(INTERNAL_ERROR, "internal error")
        if response is None:
            self._reply(HTTPStatus.NO_CONTENT, b"")
        else:
            self._reply(HTTPStatus.OK, response)

    def _discard(self, length: int) -> None:
        """Read and drop a refused body (up to a bound) so the client can read the answer."""
        remaining = min(length, MAX_DISCARD)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                return
            remaining -= len(chunk)

    def do_OPTIONS(self) -> None:  # noqa: N802 (CORS preflight)
        self._reply(HTTPStatus.NO_CONTENT, b"")

    def do_GET(self) -> None:  # noqa: N802
        mounts = self.server.mounts
        browser = "text/html" in (self.headers.get("Accept") or "")
        if mounts and browser and self.path.split("?", 1)[0] == "/":
            prefix = next(iter(mounts))
            self._reply(HTTPStatus.FOUND, b"", extra=(("Location", prefix + "/"),))
            return
        if self._mounted("GET", b""):
            return
        self._reply(
            HTTPStatus.METHOD_NOT_ALLOWED,
            _error_body(INVALID_REQUEST, "invalid request: JSON-RPC needs POST"),
        )

    def _mounted(self, method: str, body: bytes) -> bool:
        """Answer from the app mounted on this path, if any; True if one answered."""
        path = self.path.split("?", 1)[0]
        for prefix, app in self.server.mounts.items():
            if path == prefix or path.startswith(prefix + "/"):
                try:
                    reply = app.handle(method, self.path, body)
                except Exception:  # an app's bug must not stop the server
                    log.exception("%s %s failed", method, self.path)
                    reply = HttpReply(500, b'{"error": "internal error"}')
                self._reply(HTTPStatus(reply.status), reply.body,
                            content_type=reply.content_type, extra=reply.headers)
                return True
        return False

    def _reply(
        self,
        status: HTTPStatus,
        body: bytes,
        *,
        close: bool = False,
        content_type: str = "application/json",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response(status)
        if status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Type", content_type)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Content-Type")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], dispatcher: Dispatcher, max_body_size: int
    ) -> None:
        self.dispatcher = dispatcher
        self.max_body_size = max_body_size
        self.mounts: dict[str, HttpApp] = {}
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("connection from %s failed", client_address, exc_info=True)


class RpcServer:
    """A node's JSON-RPC endpoint; `start()` serves from a background thread."""

    def __init__(
        self,
        node: Node,
        host: str = "127.0.0.1",
        port: int = 8545,
        *,
        max_body_size: int = MAX_BODY_SIZE,
    ) -> None:
        self.node = node
        self.context = RpcContext(node=node, filters=FilterStore(node))
        self.dispatcher = Dispatcher(self.context, METHOD_TABLES, dev=node.dev)
        self._httpd = _HTTPServer((host, port), self.dispatcher, max_body_size)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def mount(self, prefix: str, app: HttpApp) -> None:
        """Serve GET and POST requests under `prefix` (e.g. "/dashboard") from `app`."""
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"a mount prefix is /NAME, got {prefix!r}")
        self._httpd.mounts[prefix] = app

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="pole-rpc", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
