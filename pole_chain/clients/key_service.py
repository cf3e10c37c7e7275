"""The data node's key service for encrypted tasks (miner/encrypted_tasks.py, docs/IPFE.md).

For a task it posted encrypted, the data node keeps the master secret key in the task's
directory. While the task is open it polls its node for key requests at the task's current
anchor (pole_keyRequests) and answers each with a KeyBundle signed by the poster
(pole_putKeys). For each request it checks, itself, that:

    the request's signature recovers to the miner it names, for this chain
    the anchor is the task's anchor at its node's head (never a block it was not told of)
    the miner is bonded (the registry's is_bonded)

and derives the rows from the anchor, the miner's address and the task's model input shape
(`bundle_for`; the spec is in the task's directory): a request carries no rows, so nobody
gets keys for rows of its choice. `release` (data_node.py) calls
`serve_keys` while it waits for announcements, so `pole task release --auto` serves keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from eth_utils import to_checksum_address
from web3 import Web3
from web3.exceptions import Web3RPCError

from miner.bonds import is_bonded
from miner.encrypted_tasks import KeyRequest, bundle_for
from miner.ipfe import IPFEError, MasterSecretKey
from miner.messages import MessageError
from miner.pole_module import attach_pole, error_message

MASTER_KEY_FILE = "ipfe_master_key.bin"
CLEAR_TRAIN_FILE = "train_clear.bin"


def master_key_path(task_directory: Path) -> Path:
    return Path(task_directory) / MASTER_KEY_FILE


def load_master_key(task_directory: Path) -> Optional[MasterSecretKey]:
    """The task's master secret key, or None for a task posted in clear."""
    path = master_key_path(task_directory)
    return MasterSecretKey.from_bytes(path.read_bytes()) if path.is_file() else None


@dataclass
class KeyService:
    """Answers key requests for one encrypted task; remembers whom it answered."""

    w3: Web3
    poster: object  # LocalAccount
    task_id: int
    msk: MasterSecretKey
    input_shape: tuple[int, ...]  # the task's model input: which SML (dense or local) it has
    say: Callable[[str], None] = lambda message: None
    served: set = field(default_factory=set)  # (anchor, miner)
    refused: set = field(default_factory=set)

    def serve(self) -> int:
        """One pass over the requests at the task's current anchor; returns bundles posted."""
        attach_pole(self.w3)
        best = self.w3.pole.best_task()
        if best is None or best.task_id != self.task_id or best.anchor is None:
            return 0  # no anchor for this task at the head: no keys for anybody
        anchor = best.anchor.hash
        chain_id = int(self.w3.eth.chain_id)
        posted = 0
        for raw in self.w3.pole.key_requests(self.task_id, anchor):
            try:
                request = KeyRequest.decode(raw).verify(chain_id)
            except MessageError as error:
                self.say(f"task {self.task_id}: key request ignored: {error}")
                continue
            key = (anchor, request.miner)
            if key in self.served or key in self.refused:
                continue
            if (request.task_id, request.anchor_hash) != (self.task_id, anchor):
                continue
            if not is_bonded(self.w3, request.miner):
                self.refused.add(key)
                self.say(f"task {self.task_id}: no keys for {to_checksum_address(request.miner)}: not bonded")
                continue
            try:
                bundle = bundle_for(self.msk, request, self.input_shape, private_key=self.poster.key)
                self.w3.pole.put_keys(bundle.encode())
            except IPFEError as error:
                self.refused.add(key)
                self.say(f"task {self.task_id}: no keys for {to_checksum_address(request.miner)}: {error}")
                continue
            except Web3RPCError as error:
                self.say(f"task {self.task_id}: node refused the key bundle: {error_message(error)}")
                continue
            self.served.add(key)
            posted += 1
            self.say(f"task {self.task_id}: keys served to {to_checksum_address(request.miner)} "
                     f"for anchor {best.anchor.number}")
        return posted
