"""The task anchor: the block after which the best open task became the best.

A PoLe block P on parent Q answers T, the best open task in Q's state; the registry's
``best_anchor()`` in that state names the height n after which T became best, and P's
ancestor at height n is T's anchor A (A is Q when n is Q's number). The anchor's hash seeds
the SML and binds the model commitment, the announcements and the release, so nobody can
train before A exists, and the PoLe block may land on any descendant of A while T stays the
best (docs/PROTOCOL.md, "Task anchor").

Finding A walks parent hashes from Q down to height n. The walk is bounded, since a task is
the best for at most its time limit, and memoised: a block whose parent was walked before
takes one step.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

from eth.abc import BlockHeaderAPI, StateAPI
from eth_typing import Hash32

from .registry_calls import best_anchor, best_open_task
from .task import Task

#: Blocks whose anchor is remembered (block hash -> (anchor number, anchor hash)).
ANCESTOR_MEMORY = 8192
#: States whose best task is remembered (state root -> AnchoredTask or None).
BEST_TASK_MEMORY = 1024

HeaderByHash = Callable[[Hash32], BlockHeaderAPI]


class AnchorMismatch(Exception):
    """The registry's anchored task is not its best open task (a state settlement never leaves)."""


@dataclass(frozen=True)
class AnchoredTask:
    """The best open task at a state and the height of its anchor."""

    task: Task
    anchor_number: int


def anchored_best_task(state: StateAPI) -> Optional[AnchoredTask]:
    """The best open task at ``state`` with its anchor height, or None when nothing is open.

    Raises AnchorMismatch when the registry's anchor names another task: settlement notes
    the best task after every block, so only a state that no block produced shows it.
    """
    task = best_open_task(state)
    if task is None:
        return None
    task_id, number = best_anchor(state)
    if task_id != task.task_id:
        raise AnchorMismatch(f"best open task {task.task_id}, but the anchor names task {task_id}")
    return AnchoredTask(task, number)


class BestTasks:
    """`anchored_best_task` by state root, remembered.

    A state root names its state's whole content, registry code and storage included, and
    the registry views asked (best_task, best_anchor, get_task, get_result) read storage
    only, never the block's fields: the answer for a root is the same on every node and
    every branch, so remembering it cannot change a verdict. The same state is
    asked about often: sibling PoLe blocks share their parent, and every announcement,
    release and key message is checked against its anchor's state, each ask a few registry
    calls through the EVM (tens of ms, under the node lock).
    """

    def __init__(self, capacity: int = BEST_TASK_MEMORY) -> None:
        self._capacity = capacity
        self._memo: "OrderedDict[bytes, Optional[AnchoredTask]]" = OrderedDict()
        self._lock = threading.Lock()

    def at(
        self, header: BlockHeaderAPI, state_of: Callable[[BlockHeaderAPI], StateAPI]
    ) -> Optional[AnchoredTask]:
        """`anchored_best_task` of `header`'s post-state (`state_of(header)` when not known)."""
        key = bytes(header.state_root)
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        anchored = anchored_best_task(state_of(header))
        with self._lock:
            self._memo[key] = anchored
            while len(self._memo) > self._capacity:
                self._memo.popitem(last=False)
        return anchored

    def anchored_at(
        self, header: BlockHeaderAPI, state_of: Callable[[BlockHeaderAPI], StateAPI]
    ) -> Optional[Task]:
        """The task anchored at ``header``: the best open task that became best after this
        very block, or None when the block anchors no task.

        A block anchors a task on every branch that contains it, so announcements and releases
        can be checked against the anchor alone.
        """
        anchored = self.at(header, state_of)
        if anchored is None or anchored.anchor_number != header.block_number:
            return None
        return anchored.task


class AncestorIndex:
    """Hashes of ancestors at a given height, found by walking parent hashes, memoised."""

    def __init__(self, capacity: int = ANCESTOR_MEMORY) -> None:
        self._capacity = capacity
        self._memo: "OrderedDict[bytes, tuple[int, Hash32]]" = OrderedDict()

    def ancestor_hash(
        self, header: BlockHeaderAPI, number: int, header_by_hash: HeaderByHash
    ) -> Hash32:
        """The hash of ``header``'s ancestor at height ``number`` (``header`` itself at its
        own height); ValueError for a height above it."""
        if number > header.block_number:
            raise ValueError(f"no ancestor at height {number} above block {header.block_number}")
        walked: list[bytes] = []
        current = header
        found: Optional[Hash32] = None
        while current.block_number > number:
            known = self._memo.get(current.hash)
            if known is not None and known[0] == number:
                found = known[1]
                break
            walked.append(current.hash)
            current = header_by_hash(current.parent_hash)
        if found is None:
            found = Hash32(current.hash)
        for block_hash in walked:
            self._memo[block_hash] = (number, found)
            self._memo.move_to_end(block_hash)
        while len(self._memo) > self._capacity:
            self._memo.popitem(last=False)
        return found
