"""PoLe consensus: py-evm's seal checks for the three block kinds, split as clique splits them.

``validate_seal(header)`` checks what a header shows on its own (seal format, score equals
the claimed test accuracy, the block kind is allowed here, idle proof of work), so headers
can be synced and checked before state and blobs arrive. ``validate_seal_extension(header,
parents)`` checks what needs the parent header and its post-state (the best open task, idle
timing and retarget) and, through a pluggable ``SealVerifier`` (the miner package's model
checks), the blobs. py-evm's ``Chain.validate_block`` runs both on every import; a block is
valid only if both pass. The checks are flat lists in DESIGN.md's order, each failure a
``SealError`` subclass (vm_hooks.seal_errors) naming the rule and the values.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Optional, Protocol, Type

from eth.abc import AtomicDatabaseAPI, BlockHeaderAPI, ConsensusAPI, ConsensusContextAPI
from eth.db.chain import ChainDB
from eth.typing import Address
from eth.vm.execution_context import ExecutionContext
from eth.vm.forks.prague.state import PragueState

from vm_hooks.params import CHAIN_ID

from .idle_pow import IdleParams, expected_work, meets_work, pow_hash
from .registry_calls import Task, best_open_task
from .seal import DEV_SCORE, IDLE_SCORE, BlockKind, SealedHeader, read_seal
from .seal_errors import (
    DevSealError,
    IdleSealError,
    IdleTimingError,
    IdleWorkError,
    NoVerifierError,
    ScoreClaimError,
    TaskSelectionError,
)

#: Headers remembered as validly sealed, per configured consensus class.
VALID_SEAL_MEMORY = 4096


class SealVerifier(Protocol):
    """Checks a PoLe seal against its model, datasets and release (DESIGN.md rules)."""

    def verify(self, header: BlockHeaderAPI, sealed: SealedHeader, task: Task) -> None:
        """Raise a ``SealError`` naming the broken rule; return None when the seal is valid.

        Any other exception is a bug in the verifier: the block is then neither accepted
        nor remembered as invalid.
        """


class NoModelVerifier:
    """The verifier of a node that has no model evaluation wired in: refuses PoLe seals."""

    def verify(self, header: BlockHeaderAPI, sealed: SealedHeader, task: Task) -> None:
        raise NoVerifierError("this node has no PoLe seal verifier configured")


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


def parent_idle_work(parent: BlockHeaderAPI) -> Optional[int]:
    """The parent's idle work, or None when the parent is not an idle block (or genesis)."""
    if parent.block_number == 0:
        return None
    sealed = read_seal(parent)
    return sealed.idle_work if sealed.kind is BlockKind.IDLE else None


def idle_allowed_from(parent: BlockHeaderAPI, idle: IdleParams) -> int:
    """The earliest timestamp of an idle block on ``parent`` (see IdleParams.reveal_window)."""
    if parent.block_number > 0 and read_seal(parent).kind is BlockKind.POLE:
        return parent.timestamp + idle.reveal_window
    return parent.timestamp + 1


# -- header-only checks (validate_seal) ---------------------------------------------------


def validate_pole_header(sealed: SealedHeader) -> None:
    """The score is the claimed test accuracy, so fork choice sums what miners claim."""
    if sealed.test_bps == 0:
        raise ScoreClaimError("a PoLe block needs a test accuracy above 0 bps")
    if sealed.score != sealed.test_bps:
        raise ScoreClaimError(
            f"score (difficulty) {sealed.score} must equal the claimed test "
            f"accuracy {sealed.test_bps} bps"
        )


def validate_idle_header(header: BlockHeaderAPI, sealed: SealedHeader, idle: IdleParams) -> None:
    """The proof of work meets the work the seal claims (whether that work is the retarget
    of the parent's is checked in the extension): headers alone cost a spammer hashing."""
    if sealed.score != IDLE_SCORE:
        raise IdleSealError(f"idle block score must be {IDLE_SCORE}, got {sealed.score}")
    if sealed.idle_work < idle.min_work:
        raise IdleWorkError(f"idle work {sealed.idle_work} is below the minimum {idle.min_work}")
    if not meets_work(pow_hash(header), sealed.pow_nonce, sealed.idle_work):
        raise IdleWorkError(f"idle proof of work does not meet work {sealed.idle_work}")


def validate_dev_header(sealed: SealedHeader, dev: bool) -> None:
    """Dev blocks carry no proof at all, so only a chain configured for dev mode takes them."""
    if not dev:
        raise DevSealError("dev block on a chain not configured for dev mode")
    if sealed.score != DEV_SCORE:
        raise DevSealError(f"dev block score must be {DEV_SCORE}, got {sealed.score}")


# -- checks against the parent (validate_seal_extension) ----------------------------------


def validate_task_selection(sealed: SealedHeader, best_task: Optional[Task]) -> Task:
    """The block's task must be the best open task of the parent state; returns that task."""
    if best_task is None:
        raise TaskSelectionError(f"PoLe block for task {sealed.task_id}, but no task is open")
    if sealed.task_id != best_task.task_id:
        raise TaskSelectionError(
            f"PoLe block for task {sealed.task_id}, but the best open task is "
            f"{best_task.task_id}"
        )
    return best_task


def validate_idle_extension(
    header: BlockHeaderAPI,
    sealed: SealedHeader,
    parent: BlockHeaderAPI,
    best_task: Optional[Task],
    idle: IdleParams,
) -> None:
    """Idle blocks only when nothing can be trained, after the reveal window, at the retarget."""
    allowed_from = idle_allowed_from(parent, idle)
    if header.timestamp < allowed_from:
        raise IdleTimingError(
            f"idle block at {header.timestamp} inside the reveal window of PoLe block "
            f"#{parent.block_number} (idle blocks from {allowed_from})"
        )
    if best_task is not None and best_task.deadline >= header.timestamp:
        raise IdleTimingError(
            f"idle block while task {best_task.task_id} is open until "
            f"{best_task.deadline} (block time {header.timestamp})"
        )
    work = expected_work(parent_idle_work(parent), parent.timestamp, header.timestamp, idle)
    if sealed.idle_work != work:
        raise IdleWorkError(f"idle work {sealed.idle_work}, expected {work}")


def parent_of(
    header: BlockHeaderAPI, parents: Iterable[BlockHeaderAPI], chaindb: ChainDB
) -> BlockHeaderAPI:
    """The parent among ``parents`` (headers not stored yet), else from the database."""
    for parent in parents:
        if parent.hash == header.parent_hash:
            return parent
    return chaindb.get_block_header_by_hash(header.parent_hash)


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
        """The rules a header shows on its own; genesis carries no seal."""
        if header.block_number == 0:
            return
        sealed = read_seal(header)
        if sealed.kind is BlockKind.POLE:
            validate_pole_header(sealed)
        elif sealed.kind is BlockKind.IDLE:
            validate_idle_header(header, sealed, self.idle)
        else:
            validate_dev_header(sealed, self.dev)

    def validate_seal_extension(
        self, header: BlockHeaderAPI, parents: Iterable[BlockHeaderAPI]
    ) -> None:
        """The rules that need the parent header, its post-state and the blobs.

        ``parents`` are ancestors not stored yet (py-evm's ``validate_chain_extension``); the
        parent's post-state must be in the database. A header's hash covers its seal and its
        parent, so a seal found valid once stays valid under this configuration: it is
        remembered (an import checks it before executing the block and again when
        persisting it). Only valid seals are remembered.
        """
        if header.block_number == 0 or header.hash in self._valid_seals:
            return
        sealed = read_seal(header)
        if sealed.kind is not BlockKind.DEV:
            parent = parent_of(header, parents, self._chaindb)
            best_task = best_open_task(state_at(self._db, parent))
            if sealed.kind is BlockKind.POLE:
                task = validate_task_selection(sealed, best_task)
                self.verifier.verify(header, sealed, task)
            else:
                validate_idle_extension(header, sealed, parent, best_task, self.idle)
        self._remember_valid(header)

    def _remember_valid(self, header: BlockHeaderAPI) -> None:
        self._valid_seals[header.hash] = True
        while len(self._valid_seals) > VALID_SEAL_MEMORY:
            self._valid_seals.popitem(last=False)

    @classmethod
    def get_fee_recipient(cls, header: BlockHeaderAPI) -> Address:
        return header.coinbase
