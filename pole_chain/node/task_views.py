"""Task views: the registry's tasks as this node's head sees them.

pole_tasks, pole_task and pole_bestTask (with the best task's anchor) answer from here,
messages are checked against the task their anchor block anchors, and blob withholding and the blob budget ask which digests
the open tasks name. The digests are read once per head: miners poll for blobs and each
registry read is an EVM call per task.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from eth.abc import BlockHeaderAPI
from eth_typing import Hash32

from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.locking import NodeLock
from vm_hooks.anchor import AncestorIndex, BestTasks
from vm_hooks.registry_calls import read_task
from vm_hooks.registry_calls import view as registry_view
from vm_hooks.task import Task, TaskAnchor


class UnknownTask(KeyError):
    """No task with this id in the registry at the head."""


@dataclass(frozen=True)
class OpenTaskDigests:
    """What the open tasks at one head name: test-set commitments, and every blob digest."""

    head_hash: bytes
    test_sets: frozenset[bytes]
    blobs: frozenset[bytes]  # datasets, model specs and test sets of open tasks


class TaskViews:
    """Read-only views of the task registry (each takes the node lock)."""

    def __init__(self, reader: ChainReader, lock: NodeLock) -> None:
        self._reader = reader
        self._lock = lock
        self._open_digests: OpenTaskDigests | None = None
        self._ancestors = AncestorIndex()
        self._best_tasks = BestTasks()

    def all(self) -> list[Task]:
        """Every task of the registry at the head, by id, with its result once settled."""
        with self._lock:
            state = self._reader.state_at(self._reader.head())
            (count,) = registry_view(state, "task_count")
            return [read_task(state, task_id) for task_id in range(1, count + 1)]

    def get(self, task_id: int) -> Task:
        """Task `task_id` at the head; raises UnknownTask."""
        with self._lock:
            state = self._reader.state_at(self._reader.head())
            (count,) = registry_view(state, "task_count")
            if not 1 <= task_id <= count:
                raise UnknownTask(f"no task {task_id} (the registry has {count})")
            return read_task(state, task_id)

    def best(self, parent: BlockHeaderAPI | None = None) -> Task | None:
        """The task a miner must work on when building on ``parent`` (default: the head),
        with its anchor on that branch."""
        with self._lock:
            parent = parent or self._reader.head()
            anchored = self._best_tasks.at(parent, self._reader.state_at)
            if anchored is None:
                return None
            number = anchored.anchor_number
            anchor_hash = self._ancestors.ancestor_hash(parent, number, self._reader.header)
            return replace(anchored.task, anchor=TaskAnchor(number, anchor_hash))

    def anchored_at(self, anchor_hash: Hash32) -> Task | None:
        """The task the block `anchor_hash` anchors (it became best right after that block),
        with that anchor, or None; HeaderNotFound for an unknown block. Announcements and
        releases name their anchor, so they are checked against it on any branch."""
        with self._lock:
            anchor: BlockHeaderAPI = self._reader.header(anchor_hash)
            task = self._best_tasks.anchored_at(anchor, self._reader.state_at)
            if task is None:
                return None
            return replace(task, anchor=TaskAnchor(anchor.block_number, anchor.hash))

    def bonded_at(self, anchor_hash: Hash32, miner: bytes) -> bool:
        """Whether `miner` holds a bond in the state of block `anchor_hash` (HeaderNotFound
        for an unknown block). Only bonded miners are admitted, so work done for anyone else
        (deriving a key bundle's rows costs seconds) can be refused first."""
        with self._lock:
            state = self._reader.state_at(self._reader.header(anchor_hash))
            (bonded,) = registry_view(state, "is_bonded", (miner,))
            return bool(bonded)

    def open_digests(self) -> OpenTaskDigests:
        """Test sets and blobs the open tasks at the head name (cached per head)."""
        with self._lock:
            head = self._reader.head()
            cached = self._open_digests
            if cached is None or cached.head_hash != head.hash:
                state = self._reader.state_at(head)
                (open_ids,) = registry_view(state, "open_task_ids")
                tasks = [read_task(state, task_id) for task_id in open_ids]
                cached = OpenTaskDigests(
                    head_hash=head.hash,
                    test_sets=frozenset(t.test_set_commitment for t in tasks),
                    blobs=frozenset(
                        digest
                        for t in tasks
                        for digest in (t.dataset_digest, t.model_spec, t.test_set_commitment)
                    ),
                )
                self._open_digests = cached
            return cached

    def names_blob(self, digest: bytes) -> bool:
        """Whether an open task at the head names blob `digest` (the blob budget keeps it)."""
        return bytes(digest) in self.open_digests().blobs

