"""Whether a release is valid for a task at its anchor: the one function every layer calls.

The node calls it before storing a release (pole_release), the seal verifier before a PoLe
block's model is evaluated (mapped to ``ReleaseError``), and the miner before it reveals its
model. Rules, in order: signed by its poster for this chain; the poster is the task's;
it answers this task at this anchor; its test set is the task's on-chain commitment; and,
where a commitment is given, it admits that commitment.
"""
from __future__ import annotations

from typing import Optional

from eth_utils import encode_hex

from miner.messages import MessageError, Release
from vm_hooks.task import Task


class ReleaseRefused(ValueError):
    """A release that is not valid for the task and anchor it is checked against."""


class CommitmentNotAdmitted(ReleaseRefused):
    """A valid release whose admitted list does not hold the commitment asked about."""


def check_release(
    release: Release,
    task: Task,
    anchor_hash: bytes,
    chain_id: int,
    commitment: Optional[bytes] = None,
) -> None:
    """Raise ReleaseRefused (CommitmentNotAdmitted for the last rule) naming the broken rule."""
    try:
        release.verify(chain_id)
    except MessageError as error:
        raise ReleaseRefused(f"release rejected: {error}") from None
    if release.poster != task.poster:
        raise ReleaseRefused(
            f"release signed by {encode_hex(release.poster)}, task {task.task_id} was posted "
            f"by {encode_hex(task.poster)}"
        )
    if release.task_id != task.task_id or release.anchor_hash != anchor_hash:
        raise ReleaseRefused(
            f"release answers task {release.task_id} at anchor {encode_hex(release.anchor_hash)}, "
            f"expected task {task.task_id} at anchor {encode_hex(anchor_hash)}"
        )
    if release.test_set_digest != task.test_set_commitment:
        raise ReleaseRefused(
            f"release test set {encode_hex(release.test_set_digest)} does not match the task's "
            f"commitment {encode_hex(task.test_set_commitment)}"
        )
    if commitment is not None and not release.admits(commitment):
        raise CommitmentNotAdmitted(
            f"release {encode_hex(release.digest)[:10]}… admits {len(release.admitted)} "
            f"commitment(s), not {encode_hex(commitment)}"
        )
