"""Watch a task from a web3.py script until it is settled or expires.

    .venv/bin/python examples/watch_task.py 1
    .venv/bin/python examples/watch_task.py 1 --rpc http://127.0.0.1:8546   # or $POLE_RPC

Prints each new block (idle blocks while nothing is open, the PoLe block that settles the
task), then the winner, its accuracies and the reward it was paid. A task that does not
exist yet is waited for (start this script before posting). Blocks come from `w3.eth`,
their seals are read with vm_hooks.seal, and the task from `w3.pole` (the PoLe node's
pole_* methods as a web3.py module).
"""
import argparse
import os
import sys
import time

import requests
from eth_utils import encode_hex, to_checksum_address
from web3.exceptions import Web3RPCError

from miner.pole_module import error_code, error_message, pole_web3
from vm_hooks.seal import BlockKind, read_block_seal
from vm_hooks.task import TaskStatus

DEFAULT_RPC = "http://127.0.0.1:8545"
NOT_FOUND = -32001  # the node's answer for a task id it does not know (yet)


def describe(block) -> str:
    if block["number"] == 0:
        return "block #0 (genesis)"
    sealed = read_block_seal(block)  # the seal's header fields: extra_data, nonce, mix_hash, ...
    text = f"block #{block['number']} ({sealed.kind.name.lower()}, score {sealed.score})"
    if sealed.kind is BlockKind.POLE:  # training and test accuracy in basis points
        text += (f" by {to_checksum_address(sealed.miner)}: train {sealed.train_bps / 100:.2f} %, "
                 f"test {sealed.test_bps / 100:.2f} %")
    return text


def get_task(w3, task_id: int):
    """The task, or None while the node does not know it yet."""
    try:
        return w3.pole.get_task(task_id)
    except Web3RPCError as error:
        if error_code(error) == NOT_FOUND:
            return None
        sys.exit(f"watch_task.py: the node refused: {error_message(error)}")


def main(task_id: int, url: str = DEFAULT_RPC) -> None:
    w3 = pole_web3(url)
    seen = w3.eth.block_number
    waiting = False
    while True:
        # New blocks since the last look (a reorganisation may replace the latest ones).
        for number in range(seen + 1, w3.eth.block_number + 1):
            print(describe(w3.eth.get_block(number)), flush=True)
            seen = number
        task = get_task(w3, task_id)
        if task is None and not waiting:
            print(f"task {task_id} does not exist yet; waiting for it to be posted", flush=True)
            waiting = True
        elif task is not None and task.status is TaskStatus.SETTLED:
            # Settlement is a system call inside the winning block: its result lives in
            # registry storage (the task's `result`), not in a transaction receipt.
            result = task.result
            print(f"task {task_id} settled in block #{result.block_number}: "
                  f"{to_checksum_address(result.winner)} won {w3.from_wei(task.reward, 'ether')} ETH "
                  f"(train {result.train_bps / 100:.2f} %, test {result.test_bps / 100:.2f} %), "
                  f"model {encode_hex(result.model_commitment)}")
            print(f"fetch it with: pole model get {task_id} --out model/")
            return
        elif task is not None and task.status is TaskStatus.EXPIRED:
            print(f"task {task_id} expired: the reward went back to the poster")
            return
        time.sleep(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Watch a PoLe task until it is settled or expires.")
    parser.add_argument("task_id", type=int, nargs="?", default=1, help="the task id (default: 1)")
    parser.add_argument("--rpc", default=os.environ.get("POLE_RPC", DEFAULT_RPC), metavar="URL",
                        help=f"JSON-RPC URL of a PoLe node (default: $POLE_RPC or {DEFAULT_RPC})")
    args = parser.parse_args()
    try:
        main(args.task_id, args.rpc)
    except requests.ConnectionError:
        sys.exit(f"watch_task.py: no PoLe node answers at {args.rpc} (start one: pole node --dev)")
    except KeyboardInterrupt:
        sys.exit(130)
