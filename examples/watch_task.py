"""Watch a PoLe task from web3.py until it is settled or expires.

    python examples/watch_task.py 1

Prints each new block (idle blocks while nothing is open, the PoLe block that settles the
task), then the winner, its accuracies and the reward it was paid. Blocks come from
`w3.eth`, their seals are read with vm_hooks.seal, and the task from `w3.pole` (the PoLe
node's pole_* methods as a web3.py module).
"""
import sys
import time

from eth_utils import encode_hex, to_checksum_address
from web3.exceptions import Web3RPCError

from miner.pole_module import error_message, pole_web3
from vm_hooks.seal import BlockKind, read_block_seal
from vm_hooks.task import TaskStatus

RPC_URL = "http://127.0.0.1:8545"


def describe(block) -> str:
    if block["number"] == 0:
        return "block #0 (genesis)"
    sealed = read_block_seal(block)  # the seal's header fields: extra_data, nonce, mix_hash, ...
    text = f"block #{block['number']} ({sealed.kind.name.lower()}, score {sealed.score})"
    if sealed.kind is BlockKind.POLE:  # training and test accuracy in basis points
        text += (f" by {to_checksum_address(sealed.miner)}: train {sealed.train_bps / 100:.2f} %, "
                 f"test {sealed.test_bps / 100:.2f} %")
    return text


def main(task_id: int) -> None:
    w3 = pole_web3(RPC_URL)
    seen = w3.eth.block_number
    while True:
        # New blocks since the last look (a reorganisation may replace the latest ones).
        for number in range(seen + 1, w3.eth.block_number + 1):
            print(describe(w3.eth.get_block(number)))
            seen = number
        try:
            task = w3.pole.get_task(task_id)
        except Web3RPCError as error:  # the node's JSON-RPC error, e.g. "no task 7"
            sys.exit(error_message(error))
        if task.status is TaskStatus.SETTLED:
            # Settlement is a system call inside the winning block: its result lives in
            # registry storage (the task's `result`), not in a transaction receipt.
            result = task.result
            print(f"task {task_id} settled in block #{result.block_number}: "
                  f"{to_checksum_address(result.winner)} won {w3.from_wei(task.reward, 'ether')} ETH "
                  f"(train {result.train_bps / 100:.2f} %, test {result.test_bps / 100:.2f} %), "
                  f"model {encode_hex(result.model_commitment)}")
            print(f"fetch it with: pole model get {task_id} --out model/")
            return
        if task.status is TaskStatus.EXPIRED:
            print(f"task {task_id} expired: the reward went back to the poster")
            return
        time.sleep(1)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
