"""JSON-RPC: every parameter parser refuses bad values with InvalidParam only, and every
request body, however malformed, gets a JSON-RPC answer (a result or an error object) and
never an internal error, both from the dispatcher and over HTTP from a real in-memory node."""
from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
from eth_utils import to_hex
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pole_chain.node.node import Node
from pole_chain.rpc.dispatch import INTERNAL_ERROR, InvalidParam
from pole_chain.rpc.formatting import BLOCK_TAGS
from pole_chain.rpc.server import METHOD_TABLES, RpcServer
from tests.properties.mutations import json_values, nested, refusal_kind
from vm_hooks.genesis import dev_accounts

METHODS = sorted({name for table in METHOD_TABLES for name in table.methods})
PARAMS = [
    (name, param) for table in METHOD_TABLES for name, method in table.methods.items()
    for param in method.params
]
#: Object keys the parsers look for (transactions, filters, EIP-1898, overrides, seals, evm_mine).
FIELD_NAMES = (
    "from", "to", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value", "data",
    "input", "nonce", "accessList", "chainId", "type", "address", "storageKeys", "blockHash",
    "blockNumber", "requireCanonical", "fromBlock", "toBlock", "topics", "balance", "code",
    "state", "stateDiff", "parentHash", "coinbase", "taskId", "commitment", "trainBps",
    "testBps", "releaseDigest", "timestamp", "blocks",
)
DEV_ADDRESS = dev_accounts()[0].address

# Values near what the parsers accept: hex of every length (odd ones too), quantities at
# the uint256 edge, tags, addresses, then objects and arrays built from them.
hex_strings = st.one_of(
    st.binary(max_size=40).map(to_hex),
    st.sampled_from(["0x", "0x0", "0x00", "0X1", "0xg", "1234", "0x" + "f" * 65, "0x" + "1" * 64]),
    st.integers(0, 2**257).map(hex),
)
near_valid = st.one_of(
    hex_strings,
    st.sampled_from(BLOCK_TAGS + ("Latest", "", DEV_ADDRESS, DEV_ADDRESS.lower())),
    st.integers(-1, 2**256 + 1),
    json_values,
)
rpc_values = st.recursive(
    near_valid,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), hex_strings), children, max_size=5),
    ),
    max_leaves=10,
)


@settings(max_examples=400)
@given(st.sampled_from(PARAMS), rpc_values)
def test_every_parameter_parser_raises_only_invalid_param(method_param, value):
    name, param = method_param
    try:
        param.parse(value)
    except InvalidParam as error:
        event(f"refused: {refusal_kind(error)}")
    else:
        event(f"parsed a {name} {param.name}")


@pytest.fixture(scope="module")
def server():
    """A full (non-dev) node's JSON-RPC server on a free loopback port."""
    with Node(None, dev=False) as node:
        server = RpcServer(node, port=0)
        server.start()
        yield server
        server.stop()


def requests() -> st.SearchStrategy[Any]:
    """Request objects with any mix of valid and broken framing."""
    return st.fixed_dictionaries(
        {},
        optional={
            "jsonrpc": st.one_of(st.just("2.0"), json_values),
            "id": st.one_of(st.integers(), st.text(max_size=8), st.none(), json_values),
            "method": st.one_of(st.sampled_from(METHODS), st.text(max_size=12), json_values),
            "params": st.one_of(
                st.lists(rpc_values, max_size=4),
                st.dictionaries(st.sampled_from(["address", "block", "data", "filter", "seal"]), rpc_values),
                json_values,
            ),
        },
    )


# Framing right, method real, parameters near valid: these reach the handlers.
well_framed = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0"),
        "id": st.integers(0, 2**53),
        "method": st.sampled_from(METHODS),
        "params": st.lists(rpc_values, max_size=4),
    }
)

bodies = st.one_of(
    well_framed.map(json.dumps).map(str.encode),
    st.lists(well_framed, min_size=1, max_size=3).map(json.dumps).map(str.encode),
    st.binary(max_size=200),
    json_values.map(json.dumps).map(str.encode),
    requests().map(json.dumps).map(str.encode),
    st.lists(requests(), max_size=4).map(json.dumps).map(str.encode),
    st.integers(60, 80).map(lambda depth: nested(depth).encode()),
)


def check_answer(body: bytes, answer: bytes | None) -> None:
    """An answer is one response object per request (a list for a batch), or nothing when
    every request was a notification; an error is {code, message}, never an internal error."""
    if answer is None:
        event("no answer (notifications)")
        return
    decoded = json.loads(answer)
    for response in decoded if isinstance(decoded, list) else [decoded]:
        assert response["jsonrpc"] == "2.0" and "id" in response, response
        assert ("result" in response) != ("error" in response), response
        if "error" in response:
            error = response["error"]
            assert isinstance(error["code"], int) and isinstance(error["message"], str), error
            assert error["code"] != INTERNAL_ERROR, (body, error)
            event(f"error {error['code']}")
        else:
            event("result")


@settings(max_examples=300)
@given(bodies)
def test_any_body_gets_a_json_rpc_answer(server, body):
    check_answer(body, server.dispatcher.handle_body(body))


@settings(max_examples=60)
@given(bodies)
def test_any_body_over_http_gets_a_json_rpc_answer(server, body):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    assert response.status in (200, 204), (response.status, raw)
    check_answer(body, raw if response.status == 200 else None)
