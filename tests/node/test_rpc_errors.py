"""JSON-RPC error paths over real HTTP; after every bad request the node keeps serving."""
from __future__ import annotations

import http.client
import json
from urllib.parse import urlparse

import pytest

from pole_chain.rpc.server import MAX_BODY_SIZE
from pole_chain.rpc.dispatch import Dispatcher, MethodTable, Param
from pole_chain.rpc.formatting import quantity

from . import NodeProcess


@pytest.fixture(scope="module")
def node():
    process = NodeProcess(None, dev=False).start()  # --ephemeral, a full (non-dev) node
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def still_serving(node):
    yield
    assert node.result("eth_chainId") == hex(0x504F4C45), "the node stopped answering"


def call(method, params=None, request_id=1):
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or []}


def error_of(node, body: bytes) -> dict:
    status, response = node.post(body)
    assert status == 200
    assert response["jsonrpc"] == "2.0" and "result" not in response
    return response


def test_malformed_json(node):
    response = error_of(node, b'{"jsonrpc": "2.0", "method": "eth_chainId", "id": 1')
    assert response["id"] is None
    assert response["error"]["code"] == -32700


def test_deeply_nested_json(node):
    response = error_of(node, b"[" * 100_000 + b"]" * 100_000)
    assert response["error"]["code"] == -32700


def test_invalid_requests(node):
    for body in (
        {"jsonrpc": "2.0", "id": 3},  # no method
        {"jsonrpc": "1.0", "id": 3, "method": "eth_chainId"},
        {"id": 3, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": {"no": "objects"}, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 3, "method": 42},
        "a string",
        17,
    ):
        response = error_of(node, json.dumps(body).encode())
        assert response["error"]["code"] == -32600, body


def test_unknown_method(node):
    response = error_of(node, json.dumps(call("eth_doesNotExist", request_id="abc")).encode())
    assert response["id"] == "abc"
    assert response["error"]["code"] == -32601
    assert "eth_doesNotExist" in response["error"]["message"]


def test_dev_methods_need_a_dev_node(node):
    assert node.result("pole_nodeStatus")["dev"] is False
    error = node.rpc("evm_mine")["error"]
    assert error["code"] == -32601 and "--dev" in error["message"]
    assert node.result("eth_accounts") == []


@pytest.mark.parametrize(
    "method, params, fragment",
    [
        ("eth_getBalance", ["0x1234", "latest"], "parameter 0 (address)"),
        ("eth_getBalance", ["0x" + "00" * 20, "yesterday"], "parameter 1 (block)"),
        ("eth_getBalance", [], "missing parameter 0 (address)"),
        ("eth_blockNumber", [1], "takes at most 0"),
        ("eth_getBlockByNumber", ["latest", "yes"], "parameter 1 (fullTransactions)"),
        ("eth_call", [{"to": "0x" + "00" * 20, "gas": "lots"}], "gas"),
        ("eth_call", [{"to": "0x" + "00" * 20, "colour": "red"}], "unknown transaction field"),
        ("eth_sendRawTransaction", ["0xabc"], "odd number of digits"),
        ("eth_getLogs", [{"topics": ["0x12"]}], "topics[0]"),
        ("eth_feeHistory", ["0x2", "latest", [90, 10]], "ascending"),
        ("eth_getTransactionByHash", [12], "parameter 0 (transactionHash)"),
    ],
)
def test_bad_params_name_the_parameter(node, method, params, fragment):
    error = node.rpc(method, params)["error"]
    assert error["code"] == -32602, error
    assert fragment in error["message"]


def test_params_by_name(node):
    response = node.rpc("eth_getBalance", {"address": "0x" + "00" * 20})  # type: ignore[arg-type]
    assert response["result"] == "0x0"


def test_oversized_body_gets_413_with_a_json_rpc_error(node):
    huge = json.dumps(call("eth_chainId", ["x" * (MAX_BODY_SIZE + 10)])).encode()
    status, response = node.post(huge)
    assert status == 413
    assert response["error"]["code"] == -32600
    assert "exceeds the limit" in response["error"]["message"]


def test_batches(node):
    batch = [
        call("eth_chainId", request_id=1),
        call("eth_nope", request_id=2),
        {"jsonrpc": "2.0", "method": "eth_chainId"},  # a notification: no answer
        call("eth_getBalance", ["0x12"], request_id=3),
        "junk",
    ]
    status, responses = node.post(json.dumps(batch).encode())
    assert status == 200
    by_id = {r["id"]: r for r in responses}
    assert len(responses) == 4
    assert by_id[1]["result"] == hex(0x504F4C45)
    assert by_id[2]["error"]["code"] == -32601
    assert by_id[3]["error"]["code"] == -32602
    assert by_id[None]["error"]["code"] == -32600

    assert error_of(node, b"[]")["error"]["code"] == -32600
    too_many = json.dumps([call("eth_chainId", request_id=i) for i in range(101)]).encode()
    assert "limit 100" in error_of(node, too_many)["error"]["message"]


def test_notification_gets_no_body(node):
    status, response = node.post(json.dumps({"jsonrpc": "2.0", "method": "eth_chainId"}).encode())
    assert status == 204 and response is None


def test_non_post_and_truncated_requests(node):
    url = urlparse(node.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.status == 405
    assert json.loads(response.read())["error"]["code"] == -32600
    connection.close()

    # A client that promises more bytes than it sends, then hangs up.
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    connection.putrequest("POST", "/")
    connection.putheader("Content-Length", "1000")
    connection.endheaders(b'{"jsonrpc": "2.0"')
    connection.close()


def test_execution_errors(node):
    missing = node.rpc("eth_getBalance", ["0x" + "00" * 20, "0x999999"])["error"]
    assert missing["code"] == -32001 and "header not found" in missing["message"]
    unknown_filter = node.rpc("eth_getFilterChanges", ["0x1234"])["error"]
    assert unknown_filter["code"] == -32000 and unknown_filter["message"] == "filter not found"


def test_handler_exception_is_an_internal_error_and_the_dispatcher_survives(caplog):
    table = MethodTable()

    @table.method("test_explode", Param("n", quantity))
    def explode(context, n):
        raise RuntimeError(f"boom {n}")

    @table.method("test_echo", Param("n", quantity))
    def echo(context, n):
        return n

    @table.method("test_bytes")
    def not_json(context):
        return b"raw bytes are not JSON"

    dispatcher = Dispatcher(context=None, tables=[table], dev=False)
    for attempt in range(3):
        body = json.dumps(call("test_explode", [attempt])).encode()
        response = json.loads(dispatcher.handle_body(body))
        assert response["error"]["code"] == -32603
        assert "boom" in response["error"]["message"]
    tracebacks = [r for r in caplog.records if "Traceback" in r.getMessage()]
    assert len(tracebacks) == 1  # the first failure is logged in full, repeats in one line
    assert json.loads(dispatcher.handle_body(json.dumps(call("test_echo", [5])).encode()))[
        "result"
    ] == 5
    batch = json.dumps([call("test_bytes", request_id=1), call("test_echo", [7], request_id=2)])
    first, second = json.loads(dispatcher.handle_body(batch.encode()))
    assert first["id"] == 1 and first["error"]["code"] == -32603
    assert second == {"jsonrpc": "2.0", "id": 2, "result": 7}
