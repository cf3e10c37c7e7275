"""PoLe consensus: py-evm's seal checks for the three block kinds, split as clique splits them.

``validate_seal(header)`` checks what a header shows on its own (seal format, score equals
the claimed test accuracy, a PoLe block is signed by its coinbase, the block kind is allowed
here, idle proof of work), so headers
can be synced and checked before state and blobs arrive. ``validate_seal_extension(header,
parents)`` checks what needs the parent header and its post-state (the best open task, its
deadline and anchor, idle timing and retarget) and, through a pluggable ``SealVerifier``
(the miner package's model checks), the blobs. Idle blocks never depend on open tasks, so
transactions confirm whatever is open (docs/PROTOCOL.md, "Task anchor"). py-evm's ``Chain.validate_block`` runs both on every import; a block is
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
from eth_typing import Hash32
from eth_utils import to_checksum_address

from vm_hooks.params import CHAIN_ID

from .anchor import AncestorIndex, BestTasks, HeaderByHash
from .idle_pow import IdleParams, expected_work, meets_work, pow_hash
from .registry_calls import Task
from .seal import (
    DEV_SCORE, IDLE_SCORE, BlockKind, SealedHeader, pole_score, read_seal, seal_signer,
)
from .seal_errors import (
    DevSealError,
    IdleSealError,
    IdleTimingError,
    IdleWorkError,
    NoVerifierError,
    ScoreClaimError,
    SignerMismatchError,
    TaskDeadlineError,
    TaskSelectionError,
)

#: Headers remembered as validly sealed, per configured consensus class.
VALID_SEAL_MEMORY = 4096


class SealVerifier(Protocol):
    """Checks a PoLe seal against its model, datasets and release (DESIGN.md rules)."""

    def verify(
        self, header: BlockHeaderAPI, sealed: SealedHeader, task: Task, anchor_hash: bytes
    ) -> None:
        """Raise a ``SealError`` naming the broken rule; return None when the seal is valid.

        ``anchor_hash`` is the task's anchor on this block's branch: the SML seed, the
        commitment and the release are bound to it.

        Any other exception is a bug in the verifier: the block is then neither accepted
        nor remembered as invalid.
        """


class NoModelVerifier:
    """The verifier of a node that has no model evaluation wired in: refuses PoLe seals."""

    def verify(
        self, header: BlockHeaderAPI, sealed: SealedHeader, task: Task, anchor_hash: bytes
    ) -> None:
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
    """The score is the claimed test accuracy in score units, so fork choice sums what
    miners claim and a basis point outweighs every idle block of a task's span."""
    if sealed.test_bps == 0:
        raise ScoreClaimError("a PoLe block needs a test accuracy above 0 bps")
    if sealed.score != pole_score(sealed.test_bps):
        raise ScoreClaimError(
            f"score (difficulty) {sealed.score} must be {pole_score(sealed.test_bps)}, the "
            f"claimed test accuracy {sealed.test_bps} bps in score units"
        )


def validate_pole_signature(header: BlockHeaderAPI, sealed: SealedHeader) -> None:
    """The coinbase signed everything else in the header, so nobody else can re-wrap a
    published seal with other transactions or another timestamp."""
    signer = seal_signer(header)
    if signer != sealed.miner:
        raise SignerMismatchError(
            f"PoLe block signed by {to_checksum_address(signer)}, its coinbase is "
            f"{to_checksum_address(sealed.miner)}"
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


def validate_task_deadline(header: BlockHeaderAPI, task: Task) -> None:
    """A task is answered by its deadline: later, settlement expires it instead."""
    if header.timestamp > task.deadline:
        raise TaskDeadlineError(
            f"PoLe block at {header.timestamp} for task {task.task_id}, whose deadline is "
            f"{task.deadline}"
        )


def validate_idle_extension(
    header: BlockHeaderAPI, sealed: SealedHeader, parent: BlockHeaderAPI, idle: IdleParams
) -> None:
    """Idle blocks carry transactions whatever tasks are open: after the reveal window of
    a PoLe parent, at the retarget of the parent's work."""
    allowed_from = idle_allowed_from(parent, idle)
    if header.timestamp < allowed_from:
        raise IdleTimingError(
            f"idle block at {header.timestamp} inside the reveal window of PoLe block "
            f"#{parent.block_number} (idle blocks from {allowed_from})"
        )
    work = expected_work(parent_idle_work(parent), parent.timestamp, header.timestamp, idle)
    if sealed.idle_work != work:
        raise IdleWorkError(f"idle work {sealed.idle_work}, expected {work}")


def header_lookup(parents: Iterable[BlockHeaderAPI], chaindb: ChainDB) -> HeaderByHash:
    """Headers by hash: among ``parents`` (headers not stored yet), else from the database."""
    pending = {parent.hash: parent for parent in parents}

    def header_by_hash(block_hash: Hash32) -> BlockHeaderAPI:
        found = pending.get(block_hash)
        return found if found is not None else chaindb.get_block_header_by_hash(block_hash)

    return header_by_hash


class PoLeConsensus(ConsensusAPI):
    """Seal rules of a PoLe chain; configure a subclass per chain with ``configured``."""

    dev: bool = False
    idle: IdleParams = IdleParams()
    verifier: SealVerifier = NoModelVerifier()
    _valid_seals: "OrderedDict[bytes, bool]" = OrderedDict()
    _ancestors: AncestorIndex = AncestorIndex()
    _best_tasks: BestTasks = BestTasks()

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
                "_ancestors": AncestorIndex(),
                "_best_tasks": BestTasks(),
            },
        )

    def validate_seal(self, header: BlockHeaderAPI) -> None:
        """The rules a header shows on its own; genesis carries no seal."""
        if header.block_number == 0:
            return
        sealed = read_seal(header)
        if sealed.kind is BlockKind.POLE:
            validate_pole_header(sealed)
            validate_pole_signature(header, sealed)
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
        header_by_hash = header_lookup(parents, self._chaindb)
        if sealed.kind is BlockKind.POLE:
            self._validate_pole_extension(header, sealed, header_by_hash)
        elif sealed.kind is BlockKind.IDLE:
            parent = header_by_hash(header.parent_hash)
            validate_idle_extension(header, sealed, parent, self.idle)
        self._remember_valid(header)

    def _validate_pole_extension(
        self, header: BlockHeaderAPI, sealed: SealedHeader, header_by_hash: HeaderByHash
    ) -> None:
        """The best open task of the parent state, its deadline, its anchor on this branch,
        then the model verifier against that anchor."""
        parent = header_by_hash(header.parent_hash)
        anchored = self._best_tasks.at(parent, lambda header: state_at(self._db, header))
        task = validate_task_selection(sealed, anchored.task if anchored else None)
        validate_task_deadline(header, task)
        assert anchored is not None  # validate_task_selection refused "no task open"
        anchor_hash = self._ancestors.ancestor_hash(parent, anchored.anchor_number, header_by_hash)
        self.verifier.verify(header, sealed, task, anchor_hash)

    def _remember_valid(self, header: BlockHeaderAPI) -> None:
        self._valid_seals[header.hash] = True
        while len(self._valid_seals) > VALID_SEAL_MEMORY:
            self._valid_seals.popitem(last=False)

    @classmethod
    def get_fee_recipient(cls, header: BlockHeaderAPI) -> Address:
        return header.coinbase
