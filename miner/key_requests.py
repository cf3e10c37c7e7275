"""The miner's side of an encrypted task over its node: ask for keys, check, decrypt.

Kept apart from miner/encrypted_tasks.py (the formats and rules, part of the miner's core that
consensus uses) because this part talks to a node through web3, as the mining process does.
"""
from __future__ import annotations

from eth_utils import to_canonical_address
from web3.exceptions import Web3RPCError

from miner.datasets import Dataset
from miner.encrypted_tasks import (
    DecryptedSML,
    EncryptedTaskError,
    EncryptedTrainingSet,
    KeyBundle,
    KeyRequest,
    check_bundle,
    decrypted_training_set,
)
from miner.messages import MessageError
from miner.pole_module import error_message
from miner.sml import SML

class KeysNotServed(EncryptedTaskError):
    """The data node has not (yet) answered this miner's key request: ask again later."""


def obtain_training_inputs(w3, account, task, encrypted: EncryptedTrainingSet, sml: SML,
                           chain_id: int, *, progress: bool = False
                           ) -> tuple[Dataset, DecryptedSML]:
    """Request this miner's keys for the task's anchor (once; the node refuses a request
    for a block that does not anchor the task), fetch the bundle, check it, decrypt.
    KeysNotServed while no usable bundle is there; EncryptedTaskError if decryption fails."""
    miner = to_canonical_address(account.address)
    anchor = task.anchor.hash
    raw = w3.pole.get_keys(task.task_id, anchor, miner)
    if raw is None:
        request = KeyRequest.sign(chain_id=chain_id, task_id=task.task_id, anchor_hash=anchor,
                                  private_key=account.key)
        try:
            w3.pole.request_keys(request.encode())
        except Web3RPCError as error:
            raise KeysNotServed(f"key request refused: {error_message(error)}") from None
        raise KeysNotServed(f"keys for task {task.task_id} at anchor {task.anchor.number} requested, "
                            "not served yet")
    try:
        keys = check_bundle(KeyBundle.decode(raw), chain_id=chain_id, task_id=task.task_id,
                            anchor_hash=anchor, miner=miner, poster=task.poster,
                            encrypted=encrypted, sml=sml)
    except MessageError as error:
        raise KeysNotServed(f"key bundle unusable: {error}") from None
    return decrypted_training_set(encrypted, keys, sml, progress=progress)
