"""The PoLe VM: py-evm's Prague VM plus one mixin.

The mixin swaps the post-merge seal rules (difficulty 0, nonce 0) for PoLe's, runs the
settlement system call while finalising every block, refuses transactions signed for
another chain (py-evm alone does not check the chain id), and keeps ``requests_hash``, which
carries half of a PoLe block's seal signature (vm_hooks/seal.py), instead of recomputing it:
this chain has no EIP-7685 request contracts, so a block with a request is refused.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from eth.abc import (
    BlockAPI,
    BlockAndMetaWitness,
    BlockHeaderAPI,
    SignedTransactionAPI,
    WithdrawalAPI,
)
from eth.constants import BLANK_ROOT_HASH, POST_MERGE_OMMERS_HASH
from eth.vm.forks.paris import ParisVM
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.headers import create_prague_header_from_parent
from eth_keys.exceptions import BadSignature
from eth_utils import ValidationError

from vm_hooks.params import CHAIN_ID

from .consensus import PoLeConsensus
from .idle_pow import ZERO_NONCE
from .settlement import settle_block

_create_prague_header = create_prague_header_from_parent()


class WrongChainIdError(ValidationError):
    """A transaction signed for another chain (or for none) was offered to this one."""


class BadSenderSignatureError(ValidationError):
    """A transaction's signature recovers no sender."""


def create_pole_header_from_parent(
    parent_header: Optional[BlockHeaderAPI], **header_params: Any
) -> BlockHeaderAPI:
    """Prague's header factory, but keeping the seal's difficulty (score) and nonce."""
    difficulty = header_params.pop("difficulty", 0)
    nonce = header_params.pop("nonce", ZERO_NONCE)
    header = _create_prague_header(parent_header, **header_params)
    return header.copy(difficulty=difficulty, nonce=nonce)


def validate_chain_id(transaction: SignedTransactionAPI, chain_id: int = CHAIN_ID) -> None:
    """Refuse a transaction signed for another chain, or for none (pre-EIP-155 replays).

    The one chain-id rule: the VM applies it to every transaction of every block, and the
    mempool calls it at admission. py-evm alone does not check the chain id.
    """
    signed_for = getattr(transaction, "chain_id", None)
    if signed_for is None:
        raise WrongChainIdError(
            "invalid chain id: transaction signed for no chain (chain id None); only "
            f"replay-protected (EIP-155) transactions are accepted: sign with chain id {chain_id}"
        )
    if signed_for != chain_id:
        raise WrongChainIdError(
            f"invalid chain id: transaction signed for chain {signed_for} (chain id "
            f"{signed_for} is not this chain's, {chain_id})"
        )


def validate_sender(transaction: SignedTransactionAPI) -> None:
    """A signature that recovers no public key is the block's fault, not the node's.

    py-evm lets eth_keys' BadSignature escape from block execution; the node treats any
    exception that is not a ValidationError as its own bug, so name it here.
    """
    try:
        transaction.sender
    except BadSignature as exc:
        raise BadSenderSignatureError(f"transaction signature recovers no sender: {exc}") from exc


class UnexpectedRequestsError(ValidationError):
    """A block produced EIP-7685 requests (deposits, withdrawals, consolidations): there is no
    beacon chain to take them, and requests_hash carries the seal signature instead."""


class PoLeVMMixin:
    consensus_class = PoLeConsensus
    create_header_from_parent = staticmethod(create_pole_header_from_parent)

    @classmethod
    def validate_header(cls, header: BlockHeaderAPI, parent_header: BlockHeaderAPI) -> None:
        # Skip ParisVM's zero-difficulty/zero-nonce rule; the seal carries PoLe data there.
        super(ParisVM, cls).validate_header(header, parent_header)  # type: ignore[misc]
        if header.uncles_hash != POST_MERGE_OMMERS_HASH:
            raise ValidationError("PoLe blocks carry no uncles")
        if header.withdrawals_root != BLANK_ROOT_HASH:
            raise ValidationError("PoLe blocks carry no withdrawals (there is no beacon chain)")

    def apply_all_withdrawals(self, withdrawals: Sequence[WithdrawalAPI]) -> None:
        # Withdrawals mint ether from a consensus layer PoLe does not have.
        if withdrawals:
            raise ValidationError("PoLe blocks carry no withdrawals (there is no beacon chain)")

    def validate_transaction_against_header(
        self, base_header: BlockHeaderAPI, transaction: SignedTransactionAPI
    ) -> None:
        validate_chain_id(transaction)
        validate_sender(transaction)
        super().validate_transaction_against_header(base_header, transaction)  # type: ignore[misc]

    def import_block(self, block: BlockAPI) -> BlockAndMetaWitness:
        # py-evm rebuilds the header from some of the block's fields and then recomputes
        # requests_hash: start from the block's value, which compute_requests_hash keeps.
        own = self.get_block()  # type: ignore[attr-defined]
        header = own.header.copy(requests_hash=block.header.requests_hash)
        self._block = own.copy(header=header)
        return super().import_block(block)  # type: ignore[misc]

    @staticmethod
    def compute_requests_hash(block: BlockAPI) -> BlockAPI:
        # Prague hashes the block's requests here; PoLe keeps the header's value (see above).
        carrying = [request for request in block.block_requests if len(request) > 1]
        if carrying:
            raise UnexpectedRequestsError(
                f"block produced {len(carrying)} EIP-7685 request(s) of type(s) "
                f"{sorted(request[0] for request in carrying)}; this chain takes none"
            )
        return block

    def finalize_block(self, block: BlockAPI) -> BlockAndMetaWitness:
        if block.number > 0:
            settle_block(self.state, block.header)  # type: ignore[attr-defined]
        return super().finalize_block(block)  # type: ignore[misc]


class PoLePragueVM(PoLeVMMixin, PragueVM):  # type: ignore[misc]
    fork = "pole-prague"
