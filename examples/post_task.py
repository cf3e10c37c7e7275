"""Post a PoLe training task from a web3.py script.

Run a node first (`pole node --dev`, or `pole node --mine-idle` for a full node), then:

    .venv/bin/python examples/post_task.py                  # prints the new task id
    .venv/bin/python examples/post_task.py --rpc http://127.0.0.1:8546   # another node
    POLE_RPC=http://127.0.0.1:8546 .venv/bin/python examples/post_task.py

What happens (pole_chain/clients/data_node.py does the work, this script shows the calls):
  1. the digits dataset is split; the 80 % training part and the model spec are uploaded
     to the node as blobs (miners fetch them by digest)
  2. the 20 % test part gets a random salt and stays on this machine, in ./data-node/
  3. one transaction to the task registry puts the reward in escrow and records the
     digests of the spec, the training set and the (salted) test set
Release the test set once miners have announced solutions: `pole task release ID --auto`
(or see examples/watch_task.py).
"""
import argparse
import os
import sys

import requests
from eth_account import Account

from miner.pole_module import pole_web3
from pole_chain.clients.data_node import DataNodeError, post_task

DEFAULT_RPC = "http://127.0.0.1:8545"
# The devnet's accounts come from the usual test mnemonic (same addresses as anvil/Hardhat).
MNEMONIC = "test test test test test test test test test test test junk"


def rpc_url(argv=None) -> str:
    """--rpc URL, else $POLE_RPC, else the local default."""
    parser = argparse.ArgumentParser(description="Post a PoLe training task (digits, mlp, 1 ETH).")
    parser.add_argument("--rpc", default=os.environ.get("POLE_RPC", DEFAULT_RPC), metavar="URL",
                        help=f"JSON-RPC URL of a PoLe node (default: $POLE_RPC or {DEFAULT_RPC})")
    return parser.parse_args(argv).rpc


def main(url: str = DEFAULT_RPC) -> int:
    w3 = pole_web3(url)  # web3's HTTPProvider, with the `w3.pole` module attached
    Account.enable_unaudited_hdwallet_features()
    poster = Account.from_mnemonic(MNEMONIC, account_path="m/44'/60'/0'/0/0")  # account (0)

    task_id = post_task(
        w3,
        poster,                       # signs the transaction locally (no unlocked account needed)
        dataset="digits",             # or a path to your own .npz (X, y) or .csv file
        model="mlp",                  # logreg | mlp | cnn, or a path to a JSON model spec
        reward_wei=w3.to_wei(1, "ether"),
        min_train_bps=9000,           # miners must reach 90 % training accuracy
        time_limit_s=300,             # refunded if nobody wins within 5 minutes
        solutions_wanted=3,           # release the test set after 3 announced solutions
        workdir="data-node",          # where the secret test set is kept
    )

    # The task as the registry stores it (pole_task), as a vm_hooks.task.Task record.
    task = w3.pole.get_task(task_id)
    print(f"task {task_id}: {task.status.label}, reward {w3.from_wei(task.reward, 'ether')} ETH, "
          f"deadline {task.deadline}")
    return task_id


if __name__ == "__main__":
    URL = rpc_url()
    try:
        main(URL)
    except DataNodeError as error:  # the data node's one-line refusals (unfunded key, ...)
        sys.exit(f"post_task.py: {error}")
    except requests.ConnectionError:
        sys.exit(f"post_task.py: no PoLe node answers at {URL} (start one: pole node --dev)")
