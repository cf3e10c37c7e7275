"""A task and its result: the one definition every layer uses.

The registry (contracts/task_registry.vy) stores a `Task` struct and, once a task is settled,
a `TaskResult` struct; consensus reads them from a py-evm state, the node serves them over
JSON-RPC, and the miner and the data node read them back through web3. All of them use these
records, so a field or a state is named once. Field names follow the Vyper structs.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from vm_hooks.seal import RELEASE_DIGEST_PREFIX_SIZE


class TaskStatus(enum.IntEnum):
    """A task's state, numbered as the registry numbers it (0 there means "no such task")."""

    OPEN = 1
    SETTLED = 2
    EXPIRED = 3

    @property
    def label(self) -> str:
        """The lowercase name JSON-RPC, logs and the command line use ("open", ...)."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> TaskStatus:
        """The status named by `label`; KeyError for a name that is none of them."""
        return cls[label.upper()]


@dataclass(frozen=True)
class TaskResult:
    """How a settled task was won: what the settlement system call recorded."""

    winner: bytes
    model_commitment: bytes
    train_bps: int
    test_bps: int
    release_digest: bytes  # the seal's digest prefix, zero-padded to 32 bytes by settlement
    block_number: int

    @property
    def release_digest_prefix(self) -> bytes:
        """The part of the release digest the winning seal carries (vm_hooks/seal.py)."""
        return self.release_digest[:RELEASE_DIGEST_PREFIX_SIZE]


@dataclass(frozen=True)
class TaskAnchor:
    """The block after which a task became the best open task (docs/PROTOCOL.md, "Task
    anchor"): its SML seed, model commitments, announcements and release are bound to it."""

    number: int
    hash: bytes


@dataclass(frozen=True)
class Task:
    """A task as the registry stores it, with its result once it is settled, and its anchor
    where a node reports it as the best open task."""

    task_id: int
    poster: bytes
    reward: int
    model_spec: bytes
    dataset_digest: bytes
    test_set_commitment: bytes
    min_train_bps: int
    time_limit: int
    solutions_wanted: int
    posted_at: int
    deadline: int
    status: TaskStatus
    result: Optional[TaskResult] = None
    anchor: Optional[TaskAnchor] = None

    @property
    def is_open(self) -> bool:
        return self.status == TaskStatus.OPEN
