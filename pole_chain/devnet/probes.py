"""JSON-RPC probes of devnet nodes: heads, hashes, agreement, transfers, bounded waits;
and when each node stored each PoLe block, read from its log.

Shared by tests/network and bench/ (a benchmark must not import the test suite). They talk
JSON-RPC over HTTP to `NodeProcess`es and wait on conditions with a deadline (`wait_until`);
the pause between two checks is an Event's bounded wait, never a sleep a caller depends on.
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account

from miner.bonds import is_bonded
from miner.pole_module import pole_web3
from pole_chain.devnet.node_process import NodeProcess
from vm_hooks.genesis import dev_accounts

T = TypeVar("T")
WAIT = 90.0


def rpc(node: NodeProcess, method: str, params: list[Any] | None = None) -> Any:
    """The result of one JSON-RPC call (AssertionError on an error answer)."""
    payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    request = urllib.request.Request(
        node.url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "error" not in answer, (method, answer)
    return answer["result"]


def wait_until(
    predicate: Callable[[], T], timeout: float = WAIT, what: str = "condition", *,
    pause_s: float = 0.2,
) -> T:
    """Re-check `predicate` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        pause.wait(pause_s)


def head_number(node: NodeProcess) -> int:
    return int(rpc(node, "eth_blockNumber"), 16)


def block_hash(node: NodeProcess, number: int) -> str | None:
    block = rpc(node, "eth_getBlockByNumber", [hex(number), False])
    return block["hash"] if block else None


def agree_at(nodes: Sequence[NodeProcess], number: int) -> bool:
    """Whether every node has the same canonical block at `number`."""
    hashes = {block_hash(node, number) for node in nodes}
    return len(hashes) == 1 and None not in hashes


def converged(nodes: Sequence[NodeProcess], at_least: int = 0) -> int | None:
    """The lowest head among the nodes if all agree on that block and it is >= at_least."""
    low = min(head_number(node) for node in nodes)
    return low if low >= at_least and agree_at(nodes, low) else None


def peer_id(node: NodeProcess) -> str:
    return node.multiaddr.rsplit("/p2p/", 1)[1]


def send_transfer(node: NodeProcess, sender_index: int, nonce: int, value: int = 1) -> str:
    """Sign a transfer from dev account `sender_index` and submit it raw; its hash."""
    key = dev_accounts()[sender_index].key
    gas_price = int(rpc(node, "eth_gasPrice"), 16)
    transaction = {
        "type": 2, "chainId": int(rpc(node, "eth_chainId"), 16), "nonce": nonce,
        "to": dev_accounts()[9].address, "value": value, "gas": 21000,
        "maxFeePerGas": 4 * gas_price + 10**9, "maxPriorityFeePerGas": 10**9,
    }
    signed = Account.sign_transaction(transaction, key)
    return rpc(node, "eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])


def receipt_block(node: NodeProcess, tx_hash: str) -> int | None:
    receipt = rpc(node, "eth_getTransactionReceipt", [tx_hash])
    return int(receipt["blockNumber"], 16) if receipt else None


def bonded_everywhere(nodes: Sequence[NodeProcess], miners: Sequence[str]) -> bool:
    """Whether every node sees the bond of every miner address (bonds travel as gossiped
    transactions; data nodes admit bonded miners only)."""
    return all(is_bonded(pole_web3(node.url), miner) for node in nodes for miner in miners)


#: The line pole_chain/node/block_log.py writes when a node stores a PoLe block (after its
#: seal checks re-evaluated the model), in `pole node`'s log format at info level.
_POLE_BLOCK_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO pole\.node: PoLe block "
    r"(#\d+ 0x[0-9a-f]+)…"
)


def pole_block_imports(log_path: Path) -> dict[str, float]:
    """When a node (its log at info level) stored each PoLe block: {"#7 0x1234abcdef": epoch
    seconds, millisecond resolution}; each block's first line counts."""
    stored: dict[str, float] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        match = _POLE_BLOCK_LINE.match(line)
        if match and match.group(2) not in stored:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            stored[match.group(2)] = when.timestamp()
    return stored
