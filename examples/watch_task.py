"""Watch a PoLe task from web3.py until it is settled or expires.

    python examples/watch_task.py 1

Prints each new block (idle blocks while nothing is open, the PoLe block that settles the
task), then the winner, its accuracies and the reward it was paid. Everything is read with
plain web3 calls: blocks, and the task registry's view functions.
"""
import sys
import time

from web3 import Web3

from pole_chain.clients.data_node import registry_contract

RPC_URL = "http://127.0.0.1:8545"
STATUS = {1: "open", 2: "settled", 3: "expired"}
KINDS = {1: "PoLe", 2: "idle", 3: "dev"}  # byte 3 of a PoLe chain's extra_data


def describe(block) -> str:
    extra = bytes(block["extraData"])
    kind = KINDS.get(extra[3], "?") if extra[:2] == b"PL" else "genesis"
    text = f"block #{block['number']} ({kind}, score {block['difficulty']})"
    if kind == "PoLe":  # the seal: training and test accuracy in basis points
        train, test = int.from_bytes(extra[4:6], "big"), int.from_bytes(extra[6:8], "big")
        text += f" by {block['miner']}: train {train / 100:.2f} %, test {test / 100:.2f} %"
    return text


def main(task_id: int) -> None:
    w3 = Web3(Web3.HTTPProvider(RPC_URL))
    registry = registry_contract(w3)
    seen = w3.eth.block_number
    while True:
        # New blocks since the last look (a reorganisation may replace the latest ones).
        for number in range(seen + 1, w3.eth.block_number + 1):
            print(describe(w3.eth.get_block(number)))
            seen = number
        task = registry.functions.get_task(task_id).call()  # the Task struct, as a tuple
        status = STATUS.get(task[10], "unknown")
        if status == "settled":
            # Settlement is a system call inside the winning block: its result lives in
            # registry storage (get_result), not in a transaction receipt.
            winner, commitment, train, test, _, block_number = registry.functions.get_result(task_id).call()
            print(f"task {task_id} settled in block #{block_number}: {winner} won "
                  f"{w3.from_wei(task[1], 'ether')} ETH (train {train / 100:.2f} %, "
                  f"test {test / 100:.2f} %), model 0x{commitment.hex()}")
            print(f"fetch it with: pole model get {task_id} --out model/")
            return
        if status == "expired":
            print(f"task {task_id} expired: the reward went back to the poster")
            return
        if status == "unknown":
            sys.exit(f"there is no task {task_id}")
        time.sleep(1)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
