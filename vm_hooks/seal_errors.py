"""Why a seal is refused: one exception class per family of PoLe rules.

Every class is a ``SealError`` and so an eth_utils ``ValidationError``: py-evm, the node and
the RPC layer treat each one as "this block is invalid", the same on every node. Anything
else raised while a seal is checked is a bug in the node, not a verdict on the block (see
docs/PROTOCOL.md, "Validity"). Messages name the rule and the values, for example
"claimed test accuracy 9312 bps, evaluated 9270 bps"; code and tests tell the rules apart by
class.
"""
from __future__ import annotations

from eth_utils import ValidationError


class SealError(ValidationError):
    """A header's seal breaks a PoLe rule; the message names the rule and the values."""


class SealFormatError(SealError):
    """The header fields do not decode as a seal: extra_data layout, unused fields not zero."""


class ScoreClaimError(SealError):
    """A PoLe block's score is not its claimed test accuracy, or the claim is zero."""


class DevSealError(SealError):
    """A dev seal where dev blocks are not allowed, or with a score other than the dev score."""


class IdleSealError(SealError):
    """An idle (proof-of-work) block breaks an idle rule."""


class IdleTimingError(IdleSealError):
    """An idle block inside a PoLe block's reveal window (open tasks do not stop idle blocks)."""


class IdleWorkError(IdleSealError):
    """An idle block's work is not the retarget of its parent's, or its nonce misses it."""


class TaskSelectionError(SealError):
    """A PoLe block for a task that is not the best open task in its parent's state."""


class TaskDeadlineError(TaskSelectionError):
    """A PoLe block whose timestamp is after its task's deadline."""


class NoVerifierError(SealError):
    """This node has no model verifier, so it cannot accept any PoLe block."""


class DataUnavailableError(SealError):
    """The release, model or dataset a PoLe block refers to is not held in a usable form."""


class ReleaseError(SealError):
    """The release a PoLe block answers is not valid for its task, parent and commitment."""


class ModelRejectedError(SealError):
    """The revealed model is malformed, is not the committed one, or does not fit the task."""


class MinimumAccuracyError(SealError):
    """The model's training accuracy under this block's SML is below the task's minimum."""


class AccuracyMismatchError(SealError):
    """A claimed training or test accuracy differs from the evaluated one."""


class SealSignatureError(SealError):
    """A PoLe block is not signed by its coinbase (the signature covers the rest of the header)."""


class SignatureFormatError(SealSignatureError):
    """The signature fields do not hold a canonical EIP-2098 signature (r or s out of range,
    s in the upper half, no curve point for r)."""


class SignerMismatchError(SealSignatureError):
    """The signature recovers another address than the coinbase: a re-wrapped or forged seal."""
