"""Transfers per second: through a node's HTTP JSON-RPC, and through raw py-evm block import.

    python -m bench.throughput [--rpc-transfers 300] [--import-transfers 1000]

RPC: a real `pole node --dev` process (automine: one block per transaction, the receipt
exists when eth_sendRawTransaction returns), web3.py's HTTPProvider sending pre-signed
transfers from one account one after the other. That is what a contract test suite or a
dapp script sees (`rpc_tx_per_s`). The same with `--block-time 0.5`, where many transfers
share a block (`rpc_block_time_tx_per_s`).
Import: one block of N pre-signed transfers built on one chain, then imported (decoded,
re-executed, seal and state checked, persisted) into a fresh chain: what a syncing node does.
The ratio says how much the node, HTTP and one-block-per-transaction cost over bare import.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import rlp
from eth_account import Account

from pole_chain.chain.block_production import produce_dev_block
from pole_chain.chain.opening import open_chain
from vm_hooks.params import CHAIN_ID
from pole_chain.chain.database import open_database
from vm_hooks.genesis import dev_accounts
from pole_chain.devnet.node_process import NodeProcess

from .report import report

RECIPIENT = "0x000000000000000000000000000000000000dEaD"


def signed_transfers(count: int) -> list[bytes]:
    """Transfers round-robin over the ten dev accounts (a mempool holds 64 per sender)."""
    senders = dev_accounts()
    return [
        bytes(
            Account.sign_transaction(
                {
                    "to": RECIPIENT, "value": 1, "gas": 21_000, "nonce": index // len(senders),
                    "maxFeePerGas": 20 * 10**9, "maxPriorityFeePerGas": 10**9,
                    "chainId": CHAIN_ID, "type": 2,
                },
                senders[index % len(senders)].key,
            ).raw_transaction
        )
        for index in range(count)
    ]


def transfers_mined(w3) -> int:
    return sum(w3.eth.get_transaction_count(account.address) for account in dev_accounts())


def rpc_transfers_per_second(count: int, *node_args: str) -> float:
    """Send ``count`` transfers over HTTP; the clock stops when the last one is mined."""
    raw = signed_transfers(count)
    with tempfile.TemporaryDirectory() as datadir, NodeProcess(Path(datadir), *node_args) as node:
        w3 = node.web3()
        w3.eth.send_raw_transaction(raw[0])  # warm up the connection and the node's caches
        while transfers_mined(w3) < 1:
            time.sleep(0.01)
        start = time.perf_counter()
        for transaction in raw[1:]:
            w3.eth.send_raw_transaction(transaction)
        while transfers_mined(w3) < count:
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
    return (count - 1) / elapsed


def import_transfers_per_second(count: int) -> float:
    producer = open_chain(open_database(None), dev=True)
    builder = producer.get_vm().get_transaction_builder()
    transactions = [builder.decode(raw) for raw in signed_transfers(count)]
    block = produce_dev_block(producer, transactions).block
    assert len(block.transactions) == count
    encoded = rlp.encode(block)
    importer = open_chain(open_database(None), dev=True)
    block_class = importer.get_vm_class_for_block_number(1).get_block_class()
    start = time.perf_counter()
    importer.import_block(rlp.decode(encoded, sedes=block_class))
    elapsed = time.perf_counter() - start
    assert importer.get_canonical_head() == block.header
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc-transfers", type=int, default=300)
    parser.add_argument("--import-transfers", type=int, default=1000)
    args = parser.parse_args()
    rpc = rpc_transfers_per_second(args.rpc_transfers)
    print(f"RPC (automine, one block per transfer): {rpc:.0f} transfers/s", flush=True)
    batched = rpc_transfers_per_second(args.rpc_transfers, "--block-time", "0.5")
    print(f"RPC (a block every 0.5 s): {batched:.0f} transfers/s", flush=True)
    imported = import_transfers_per_second(args.import_transfers)
    print(f"block import ({args.import_transfers} transfers in one block): {imported:.0f} transfers/s", flush=True)
    report(
        "throughput",
        {
            "rpc_tx_per_s": round(rpc, 1),
            "rpc_block_time_tx_per_s": round(batched, 1),
            "import_tx_per_s": round(imported, 1),
            "ratio": round(rpc / imported, 3),
            "rpc_transfers": args.rpc_transfers,
            "import_transfers": args.import_transfers,
        },
    )


if __name__ == "__main__":
    main()
