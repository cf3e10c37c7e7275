"""Post a PoLe training task from a web3.py script.

Run a node first (`pole node --dev`, or `pole node --mine-idle` for a full node), then:

    python examples/post_task.py            # prints the new task id

What happens (pole_chain/clients/data_node.py does the work, this script shows the calls):
  1. the digits dataset is split; the 80 % training part and the model spec are uploaded
     to the node as blobs (miners fetch them by digest)
  2. the 20 % test part gets a random salt and stays on this machine, in ./data-node/
  3. one transaction to the task registry puts the reward in escrow and records the
     digests of the spec, the training set and the (salted) test set
Release the test set once miners have announced solutions: `pole task release ID --auto`
(or see examples/watch_task.py).
"""
from eth_account import Account

from miner.pole_module import pole_web3
from pole_chain.clients.data_node import post_task

RPC_URL = "http://127.0.0.1:8545"
# The devnet's accounts come from the usual test mnemonic (same addresses as anvil/Hardhat).
MNEMONIC = "test test test test test test test test test test test junk"


def main() -> int:
    w3 = pole_web3(RPC_URL)  # web3's HTTPProvider, with the `w3.pole` module attached
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
    main()
