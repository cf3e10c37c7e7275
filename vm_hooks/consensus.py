"""PoLe consensus: py-evm's seal check for the three block kinds.

py-evm calls ``validate_seal`` on every import (``Chain.validate_block``), so this is where
the rules of DESIGN.md "A PoLe block is valid only if" live. Checks that need the model, the
datasets and the release are delegated to a pluggable ``SealVerifier`` (filled by the miner
package), so this module stays free of any ML code.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Final, Iterable, Optional, Protocol, Type

from eth.abc import AtomicDatabaseAPI, BlockHeaderAPI, ConsensusAPI, ConsensusContextAPI
from eth.db.chain import ChainDB
from eth.typing import Address
from eth.vm.execution_context import ExecutionContext
from eth.vm.forks.prague.state import PragueState

from vm_hooks.params import CHAIN_ID

from .idle_pow import IdleParams, ZERO_HASH, ZERO_NONCE, expected_work, meets_work, pow_hash
from .registry_calls import Task, best_open_task
from .seal import BlockKind, Seal, SealError

#: Headers remembered as validly sealed, per configured consensus class.
VALID_SEAL_MEMORY = 4096
#: Score (difficulty) of idle and dev blocks: any PoLe block (score >= 1 bps) ties or beats it.
IDLE_SCORE: Final = 1
DEV_SCORE: Final = 1


class SealVerifier(Protocol):
    """Checks a PoLe seal against its model, datasets and release (DESIGN.md rules)."""

    def verify(self, header: BlockHeaderAPI, seal: Seal, task: Task) -> None:
        """Raise ``SealError`` naming the broken rule; return None when the seal is valid."""


class NoModelVerifier:
    """The verifier of a node that has no model evaluation wired in: refuses PoLe seals."""

    def verify(self, header: BlockHeaderAPI, seal: Seal, task: Task) -> None:
        raise SealError("this node has no PoLe seal verifier configured")


def state_at(db: AtomicDatabaseAPI, header: BlockHeaderAPI) -> PragueState:
    """The post-state of ``header``, for read-only registry calls."""
    context = ExecutionContext(
        coinbase=header.coinbase,
        timestamp=header.timestamp,
        block_number=header.block_number,
        difficulty=header.difficulty,
        mix_hash=header.mix_hash,
        gas_limit=header.gas_limit,
        prev_hashes=(),
        chain_id=CHAIN_ID,
        base_fee_per_gas=header.base_fee_per_gas,
        excess_blob_gas=header.excess_blob_gas,
    )
    return PragueState(db, context, header.state_root)


def block_kind(header: BlockHeaderAPI) -> BlockKind:
    return Seal.decode(header.extra_data).kind


def parent_idle_work(parent: BlockHeaderAPI) -> Optional[int]:
    """The parent's idle work, or None when the parent is not an idle block (or genesis)."""
    if parent.block_number == 0:
        return None
    seal = Seal.decode(parent.extra_data)
    return seal.idle_work if seal.kind is BlockKind.IDLE else None


def idle_allowed_from(parent: BlockHeaderAPI, idle: IdleParams) -> int:
    """The earliest timestamp of an idle block on ``parent`` (see IdleParams.reveal_window)."""
    if parent.block_number > 0 and block_kind(parent) is BlockKind.POLE:
        return parent.timestamp + idle.reveal_window
    return parent.timestamp + 1


class PoLeConsensus(ConsensusAPI):
    """Seal rules of a PoLe chain; configure a subclass per chain with ``configured``."""

    dev: bool = False
    idle: IdleParams = IdleParams()
    verifier: SealVerifier = NoModelVerifier()
    _valid_seals: "OrderedDict[bytes, bool]" = OrderedDict()

    def __init__(self, context: ConsensusContextAPI) -> None:
        self._db = context.db
        self._chaindb = ChainDB(context.db)

    @classmethod
    def configured(
        cls,
        *,
        dev: bool,
        idle: IdleParams = IdleParams(),
        verifier: Optional[SealVerifier] = None,
    ) -> Type["PoLeConsensus"]:
        return type(
            "ConfiguredPoLeConsensus",
            (cls,),
            {
                "dev": dev,
                "idle": idle,
                "verifier": verifier or NoModelVerifier(),
                "_valid_seals": OrderedDict(),
            },
        )

    def validate_seal(self, header: BlockHeaderAPI) -> None:
        # A header's hash covers its seal and its parent, so a seal found valid once stays
        # valid under this configuration: remember it (an import checks the seal before
        # executing the block and again when persisting it).
        if header.hash in self._valid_seals:
            return
        self._check_seal(header)
        self._valid_seals[header.hash] = True
        while len(self._valid_seals) > VALID_SEAL_MEMORY:
            self._valid_seals.popitem(last=False)

    def _check_seal(self, header: BlockHeaderAPI) -> None:
        if header.block_number == 0:
            return
        seal = Seal.decode(header.extra_data)
        if seal.kind is BlockKind.DEV:
            self._validate_dev(header)
            return
        parent = self._chaindb.get_block_header_by_hash(header.parent_hash)
        best_task = best_open_task(state_at(self._db, parent))
        if seal.kind is BlockKind.POLE:
            self._validate_pole(header, seal, best_task)
        else:
            self._validate_idle(header, seal, parent, best_task)

    def _validate_pole(
        self, header: BlockHeaderAPI, seal: Seal, best_task: Optional[Task]
    ) -> None:
        if seal.test_bps == 0:
            raise SealError("a PoLe block needs a test accuracy above 0 bps")
        if header.difficulty != seal.test_bps:
            raise SealError(
                f"score (difficulty) {header.difficulty} must equal the claimed test "
                f"accuracy {seal.test_bps} bps"
            )
        task_id = int.from_bytes(header.nonce, "big")
        if best_task is None:
            raise SealError(f"PoLe block for task {task_id}, but no task is open")
        if task_id != best_task.task_id:
            raise SealError(
                f"PoLe block for task {task_id}, but the best open task is "
                f"{best_task.task_id}"
            )
        self.verifier.verify(header, seal, best_task)

    def _validate_idle(
        self,
        header: BlockHeaderAPI,
        seal: Seal,
        parent: BlockHeaderAPI,
        best_task: Optional[Task],
    ) -> None:
        if header.difficulty != IDLE_SCORE:
            raise SealError(
                f"idle block score must be {IDLE_SCORE}, got {header.difficulty}"
            )
        if header.mix_hash != ZERO_HASH:
            raise SealError("idle block mix_hash must be zero")
        allowed_from = idle_allowed_from(parent, self.idle)
        if header.timestamp < allowed_from:
            raise SealError(
                f"idle block at {header.timestamp} inside the reveal window of PoLe block "
                f"#{parent.block_number} (idle blocks from {allowed_from})"
            )
        if best_task is not None and best_task.deadline >= header.timestamp:
            raise SealError(
                f"idle block while task {best_task.task_id} is open until "
                f"{best_task.deadline} (block time {header.timestamp})"
            )
        work = expected_work(
            parent_idle_work(parent), parent.timestamp, header.timestamp, self.idle
        )
        if seal.idle_work != work:
            raise SealError(f"idle work {seal.idle_work}, expected {work}")
        if not meets_work(pow_hash(header), header.nonce, work):
            raise SealError(f"idle proof of work does not meet work {work}")

    def _validate_dev(self, header: BlockHeaderAPI) -> None:
        if not self.dev:
            raise SealError("dev block on a chain not configured for dev mode")
        if header.difficulty != DEV_SCORE:
            raise SealError(f"dev block score must be {DEV_SCORE}, got {header.difficulty}")
        if header.nonce != ZERO_NONCE or header.mix_hash != ZERO_HASH:
            raise SealError("dev block nonce and mix_hash must be zero")

    def validate_seal_extension(
        self, header: BlockHeaderAPI, parents: Iterable[BlockHeaderAPI]
    ) -> None:
        """Every PoLe rule is checked against the parent state in ``validate_seal``."""

    @classmethod
    def get_fee_recipient(cls, header: BlockHeaderAPI) -> Address:
        return header.coinbase
