"""JSON-RPC 2.0 framing: requests in, responses out, method tables, error objects.

This layer knows nothing about HTTP (server.py) or the chain (the *_api.py handlers). A
handler is a plain function `handler(context, *params)`; it is registered, with one `Param`
per positional parameter, by decorating it:

    @METHODS.method("eth_getBalance", Param("address", fmt.address), Param("block", fmt.block_id))
    def get_balance(ctx, address, block): ...

The dispatcher checks the request shape, looks the method up, parses every parameter (a
failure names the parameter and why, code -32602), calls the handler, and turns any exception
into an error object. A handler exception never escapes: unexpected ones are logged (the full
traceback the first time per method and exception type) and answered with -32603.
"""
from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pole.rpc")

# JSON-RPC 2.0 and EIP-1474 error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # geth's code for "the node refused": tx pool errors, unknown filter...
RESOURCE_NOT_FOUND = -32001
LIMIT_EXCEEDED = -32005
EXECUTION_REVERTED = 3  # geth: eth_call / eth_estimateGas hit REVERT; data = revert output

#: Largest batch answered; a larger one gets a single -32600 error.
MAX_BATCH_SIZE = 100
#: Deepest JSON nesting parsed. py-evm raises Python's recursion limit to 100,000 for EVM
#: call depth, so json.loads would recurse on a hostile "[[[[..." until the C stack overflows.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")

_REQUIRED = object()


class RpcError(Exception):
    """An error answered to the caller as {"code", "message", "data"?}."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class InvalidParam(ValueError):
    """Raised by a parameter parser; the message says what was expected."""


@dataclass(frozen=True)
class Param:
    """One positional parameter: its name (for messages and by-name calls) and parser."""

    name: str
    parse: Callable[[Any], Any]
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Method:
    name: str
    handler: Callable[..., Any]
    params: tuple[Param, ...]
    dev_only: bool = False


@dataclass
class MethodTable:
    """A set of methods; each *_api module has one, the dispatcher merges them."""

    methods: dict[str, Method] = field(default_factory=dict)

    def method(
        self, name: str, *params: Param, dev_only: bool = False
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.register(name, handler, *params, dev_only=dev_only)
            return handler

        return register

    def register(
        self, name: str, handler: Callable[..., Any], *params: Param, dev_only: bool = False
    ) -> None:
        if name in self.methods:
            raise ValueError(f"JSON-RPC method {name} registered twice")
        self.methods[name] = Method(name, handler, tuple(params), dev_only)


class Dispatcher:
    """Answers JSON-RPC request bodies against a context object handed to every handler."""

    def __init__(
        self,
        context: Any,
        tables: Iterable[MethodTable],
        *,
        dev: bool,
        max_batch_size: int = MAX_BATCH_SIZE,
    ) -> None:
        self.context = context
        self.dev = dev
        self.max_batch_size = max_batch_size
        self.methods: dict[str, Method] = {}
        for table in tables:
            for name, method in table.methods.items():
                if name in self.methods:
                    raise ValueError(f"JSON-RPC method {name} registered twice")
                self.methods[name] = method
        self._logged_failures: set[tuple[str, str]] = set()

    # -- bodies ------------------------------------------------------------------------

    def handle_body(self, body: bytes) -> bytes | None:
        """One HTTP body in, one out (None: only notifications, nothing to answer)."""
        if json_depth(body) > MAX_JSON_DEPTH:
            return _encode(
                error_response(
                    None,
                    RpcError(PARSE_ERROR, f"parse error: JSON nested deeper than {MAX_JSON_DEPTH}"),
                )
            )
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return _encode(error_response(None, RpcError(PARSE_ERROR, f"parse error: {exc}")))
        if isinstance(request, list):
            if not request:
                return _encode(
                    error_response(None, RpcError(INVALID_REQUEST, "invalid request: empty batch"))
                )
            if len(request) > self.max_batch_size:
                return _encode(
                    error_response(
                        None,
                        RpcError(
                            INVALID_REQUEST,
                            f"invalid request: batch of {len(request)} requests, "
                            f"limit {self.max_batch_size}",
                        ),
                    )
                )
            answers = [a for a in (self._answer(item) for item in request) if a is not None]
            return b"[" + b",".join(answers) + b"]" if answers else None
        return self._answer(request)

    def _answer(self, request: Any) -> bytes | None:
        """One request's encoded response; a result JSON cannot encode becomes -32603."""
        response = self.handle_request(request)
        if response is None:
            return None
        try:
            return _encode(response)
        except (TypeError, ValueError) as exc:
            method = request.get("method", "?") if isinstance(request, dict) else "?"
            self._log_failure(str(method), exc)
            error = RpcError(INTERNAL_ERROR, f"internal error: unencodable result: {exc}")
            return _encode(error_response(response.get("id"), error))

    def handle_request(self, request: Any) -> dict[str, Any] | None:
        """One decoded request object in, its response out (None for a notification)."""
        if not isinstance(request, dict):
            return error_response(
                None, RpcError(INVALID_REQUEST, "invalid request: expected a JSON object")
            )
        request_id = request.get("id")
        is_notification = "id" not in request
        try:
            self._check_shape(request)
            result = self.call(request["method"], request.get("params", []))
        except RpcError as exc:
            if is_notification and exc.code != INVALID_REQUEST:
                return None
            if exc.code == INVALID_REQUEST and not _valid_id(request_id):
                request_id = None
            return error_response(request_id, exc)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    # -- calls -------------------------------------------------------------------------

    def call(self, name: str, params: Any) -> Any:
        """Parse `params` for method `name` and run its handler; raises RpcError."""
        method = self.methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"the method {name} does not exist/is not available")
        if method.dev_only and not self.dev:
            raise RpcError(
                METHOD_NOT_FOUND,
                f"the method {name} is only available on a dev node (start it with --dev)",
            )
        args = self._parse_params(method, params)
        try:
            return method.handler(self.context, *args)
        except RpcError:
            raise
        except Exception as exc:
            self._log_failure(name, exc)
            raise RpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}") from exc

    def _parse_params(self, method: Method, params: Any) -> list[Any]:
        if isinstance(params, dict):
            unknown = set(params) - {p.name for p in method.params}
            if unknown:
                raise RpcError(
                    INVALID_PARAMS,
                    f"invalid params: {method.name} has no parameter named "
                    f"{', '.join(sorted(unknown))}",
                )
            params = [params.get(p.name, _REQUIRED) for p in method.params]
            while params and params[-1] is _REQUIRED:
                params.pop()
        elif not isinstance(params, list):
            raise RpcError(INVALID_PARAMS, "invalid params: expected a JSON array or object")
        if len(params) > len(method.params):
            raise RpcError(
                INVALID_PARAMS,
                f"invalid params: {method.name} takes at most {len(method.params)} "
                f"parameter(s), got {len(params)}",
            )
        args = []
        for position, param in enumerate(method.params):
            given = params[position] if position < len(params) else _REQUIRED
            if given is _REQUIRED or (given is None and not param.required):
                if param.required:
                    raise RpcError(
                        INVALID_PARAMS,
                        f"invalid params: missing parameter {position} ({param.name})",
                    )
                args.append(param.default)
                continue
            try:
                args.append(param.parse(given))
            except InvalidParam as exc:
                raise RpcError(
                    INVALID_PARAMS,
                    f"invalid params: parameter {position} ({param.name}): {exc}",
                ) from exc
        return args

    @staticmethod
    def _check_shape(request: dict[str, Any]) -> None:
        if request.get("jsonrpc") != "2.0":
            raise RpcError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
        if not isinstance(request.get("method"), str):
            raise RpcError(INVALID_REQUEST, 'invalid request: "method" must be a string')
        if "id" in request and not _valid_id(request["id"]):
            raise RpcError(
                INVALID_REQUEST, 'invalid request: "id" must be a string, a number or null'
            )

    def _log_failure(self, method: str, exc: Exception) -> None:
        signature = (method, type(exc).__name__)
        if signature in self._logged_failures:
            log.error("%s failed again: %s: %s", method, type(exc).__name__, exc)
            return
        self._logged_failures.add(signature)
        log.error("%s failed: %s", method, "".join(traceback.format_exception(exc)).rstrip())


def json_depth(body: bytes) -> int:
    """The deepest array/object nesting in a JSON text (brackets inside strings ignored)."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # cannot be deeper than the number of openers: the common, cheap case
    depth = deepest = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub(b"", body)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
        else:
            depth -= 1
    return deepest


def error_response(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
