"""Node and JSON-RPC tests: real `python -m pole_chain node` processes over real HTTP.

`NodeProcess` starts a node the way a user does and waits for its "Listening on URL" line;
`rpc`/`post` talk raw JSON-RPC for the error-path tests, `web3()` gives an HTTPProvider.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from pole_chain.devnet import node_process as pole_node_process

STORE_SOURCE = """
# pragma version ^0.4.0
event Stored:
    who: indexed(address)
    amount: uint256

stored: public(uint256)

@external
def store(amount: uint256):
    assert amount != 13, "unlucky number"
    self.stored = amount
    log Stored(who=msg.sender, amount=amount)
"""


def compile_store_contract() -> tuple[list[dict[str, Any]], str]:
    """(abi, bytecode) of a tiny Vyper contract with an event and a revert reason."""
    import vyper

    out = vyper.compile_code(STORE_SOURCE, output_formats=["abi", "bytecode"])
    return out["abi"], out["bytecode"]


class NodeProcess(pole_node_process.NodeProcess):
    """A node process plus raw JSON-RPC helpers for the error-path tests."""

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST raw bytes; returns (HTTP status, decoded JSON body or None)."""
        request = urllib.request.Request(
            self.url,
            data=body,
            headers={"Content-Type": "application/json", **(headers or {})},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        return status, json.loads(raw) if raw else None

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """The whole response object of one call (result or error)."""
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        status, response = self.post(json.dumps(payload).encode())
        assert status == 200, (status, response)
        return response

    def result(self, method: str, params: list[Any] | None = None) -> Any:
        response = self.rpc(method, params)
        assert "error" not in response, response
        return response["result"]
