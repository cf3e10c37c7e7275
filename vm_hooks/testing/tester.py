"""eth-tester and web3 on the real PoLe dev chain, for contract test suites.

``PoLeEVMBackend`` is eth-tester's py-evm backend running the chain a ``pole --dev`` node
runs: the PoLe consensus and VM (settlement system call, chain-id check), chain id
0x504F4C45, the task registry predeployed, and the devnet's mnemonic accounts. eth-tester's
own backend builds a private chain class with ``NoProofConsensus`` and an unsealed header, so
this backend keeps its query and transaction code and replaces only how the chain is made
(``reset_to_genesis``), how the pending block is sealed and mined (``mine_blocks``,
``time_travel``), how snapshots rewind, and how transactions are signed.

Every block is a PoLe *dev* block, sealed before its transactions run, so the execution
context (coinbase, PREVRANDAO, difficulty, timestamp) is the one an importing node sees.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Tuple, Type, cast

from eth.constants import ZERO_ADDRESS
import eth_abi
from eth_abi.exceptions import DecodingError
from eth.abc import BlockHeaderAPI, SignedTransactionAPI, TransactionBuilderAPI
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.exceptions import Revert
from eth.vm.forks.cancun import get_total_blob_gas
from eth.vm.spoof import SpoofTransaction
from eth_keys import keys
from eth_tester import EthereumTester
from eth_tester.backends.pyevm.main import (  # the helper is eth-tester's own call path
    PyEVMBackend,
    _execute_and_revert_transaction,
)
from eth_tester.exceptions import TransactionFailed
from eth_tester.exceptions import ValidationError as EthTesterValidationError
from eth_tester.validation import DefaultValidator
from eth_tester.validation.inbound import validate_transaction
from eth_typing import Address, Hash32
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.eth_tester.defaults import API_ENDPOINTS, static_return
from web3.types import RPCEndpoint, RPCResponse

from vm_hooks.chain_config import chain_class
from vm_hooks.params import CHAIN_ID
from vm_hooks.genesis import dev_accounts, genesis_params, genesis_state

from vm_hooks.chain import PoLeChain
from vm_hooks.seal import Seal, header_fields

#: Selector of Solidity's and Vyper's ``Error(string)`` revert reason.
ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")

class PoLeTesterChainMixin:
    """The MiningChain side of the tester chain: every pending header carries a dev seal."""

    def create_header_from_parent(
        self, parent_header: BlockHeaderAPI, **header_params: Any
    ) -> BlockHeaderAPI:
        # Seal first (so transactions run under the header importers will see), and keep
        # the gas limit constant as eth-tester's own chain does.
        coinbase = header_params.get("coinbase", ZERO_ADDRESS)
        dev_seal = header_fields(Seal.dev(), miner=coinbase)  # every tester block is a dev block
        params = {"gas_limit": parent_header.gas_limit, **header_params, **dev_seal}
        return super().create_header_from_parent(parent_header, **params)  # type: ignore[misc]

    def get_transaction_builder(self) -> Type[TransactionBuilderAPI]:
        return self.get_vm().get_transaction_builder()  # type: ignore[attr-defined]


@functools.cache
def tester_chain_class() -> Type[MiningChain]:
    """``chain_class(dev=True)`` with py-evm's MiningChain, which eth-tester drives."""
    dev_chain = chain_class(dev=True)
    return type("PoLeTesterChain", (PoLeTesterChainMixin, dev_chain, MiningChain), {})


def new_tester_chain() -> MiningChain:
    """A fresh in-memory dev chain at the PoLe dev genesis (same genesis hash as a devnet)."""
    return tester_chain_class().from_genesis(  # type: ignore[return-value]
        AtomicDB(), genesis_params(dev=True), genesis_state()
    )


class RevertedCall(TransactionFailed):
    """A call that reverted: ``args[0]`` is eth-tester's message, ``data`` the revert output."""

    def __init__(self, message: str, data: bytes) -> None:
        super().__init__(message)
        self.data = data


def revert_reason(data: bytes) -> Optional[str]:
    """The reason string of an ``Error(string)`` revert, or None for any other output."""
    if data[:4] != ERROR_STRING_SELECTOR:
        return None
    try:
        (reason,) = eth_abi.decode(["string"], data[4:])
    except (DecodingError, UnicodeDecodeError):  # malformed: not a reason string after all
        return None
    return reason


class PoLeEVMBackend(PyEVMBackend):
    """eth-tester backend on the PoLe dev chain; accounts are the devnet's mnemonic accounts.

    Takes no genesis or VM arguments: the chain is always the PoLe dev chain.
    """

    def __init__(self) -> None:
        self.account_keys: Tuple[keys.PrivateKey, ...] = ()
        self.reset_to_genesis()

    @classmethod
    def from_mnemonic(cls, *args: Any, **kwargs: Any) -> "PoLeEVMBackend":
        raise NotImplementedError(
            "the PoLe tester always uses the devnet accounts (pole_chain.genesis.dev_accounts)"
        )

    #
    # Genesis
    #
    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        if args or any(value is not None for value in kwargs.values()):
            raise EthTesterValidationError(
                "PoLeEVMBackend always resets to the PoLe dev genesis; it takes no "
                "genesis parameters, state, accounts or VM configuration"
            )
        self.account_keys = tuple(keys.PrivateKey(account.key) for account in dev_accounts())
        self.chain = new_tester_chain()

    #
    # Mining
    #
    def mine_blocks(
        self, num_blocks: int = 1, coinbase: Address = ZERO_ADDRESS
    ) -> Tuple[Hash32, ...]:
        block_hashes = []
        for _ in range(num_blocks):
            if self.chain.header.coinbase != coinbase:
                self._rebuild_pending_block(coinbase=coinbase)
            # MiningChain.mine_block finalises (settlement system call), checks the seal
            # through PoLeConsensus and persists.
            block = self.chain.mine_block(blob_gas_used=self._pending_blob_gas_used())
            block_hashes.append(block.hash)
        return tuple(block_hashes)

    def time_travel(self, to_timestamp: int) -> int:
        # As eth-tester: the block mined now is one second earlier, the pending one is at
        # ``to_timestamp``. Pending transactions are re-run under the new timestamp.
        self._rebuild_pending_block(timestamp=to_timestamp - 1)
        self.mine_blocks()
        return to_timestamp

    def _pending_blob_gas_used(self) -> int:
        return sum(get_total_blob_gas(tx) for tx in self.chain.get_block().transactions)

    def _rebuild_pending_block(self, **header_changes: Any) -> None:
        """Start the pending block again under a changed header and re-run its transactions.

        Changing coinbase or timestamp after transactions ran would make the block's state
        disagree with what any importer computes.
        """
        pending = self.chain.header
        transactions = self.chain.get_block().transactions
        parent = self.chain.get_canonical_head()
        params = {"coinbase": pending.coinbase, "timestamp": pending.timestamp, **header_changes}
        self.chain.header = self.chain.create_header_from_parent(parent, **params)
        for transaction in transactions:
            self.chain.apply_transaction(transaction)

    #
    # Snapshots
    #
    def revert_to_snapshot(self, snapshot: Hash32) -> None:
        chain: PoLeChain = self.chain  # type: ignore[assignment]
        chain.rewind_to(snapshot)
        self.chain.header = self.chain.create_header_from_parent(self.chain.get_canonical_head())

    #
    # Accounts
    #
    def add_account(self, private_key: bytes) -> None:
        self.account_keys = self.account_keys + (keys.PrivateKey(private_key),)

    #
    # Transactions
    #
    def call(self, transaction: dict, block_number: Any = "latest") -> bytes:
        """eth-tester's ``call``, but a revert keeps its output (``RevertedCall.data``)."""
        if "gas" not in transaction:
            transaction = {**transaction, "gas": self._max_available_gas()}
        unsigned = self._get_normalized_and_unsigned_evm_transaction(transaction, block_number)
        computation = _execute_and_revert_transaction(
            self.chain, SpoofTransaction(unsigned, from_=transaction["from"]), block_number
        )
        if not computation.is_error:
            return computation.output
        error = computation.error
        if isinstance(error, Revert):
            data = error.args[0] if error.args else b""
            raise RevertedCall(revert_reason(data) or str(error), data)
        raise TransactionFailed(str(error))

    def _get_normalized_and_signed_evm_transaction(
        self, transaction: dict, block_number: Any = "latest"
    ) -> SignedTransactionAPI:
        # eth-tester signs legacy transactions without a chain id, which the PoLe VM refuses;
        # sign for this chain, and re-decode so the transaction has the VM's own class.
        if transaction["from"] not in self._key_lookup:
            raise EthTesterValidationError(
                'No valid "from" key was provided in the transaction '
                "which is required for transaction signing."
            )
        signing_key = self._key_lookup[transaction["from"]]
        unsigned = self._get_normalized_and_unsigned_evm_transaction(transaction, block_number)
        signed = unsigned.as_signed_transaction(signing_key, chain_id=CHAIN_ID)
        return self.chain.get_transaction_builder().decode(signed.encode())


#: EIP-155 ``v`` values of a legacy transaction signed for this chain.
EIP155_V = (CHAIN_ID * 2 + 35, CHAIN_ID * 2 + 36)


class PoLeValidator(DefaultValidator):
    """eth-tester's validator, accepting a legacy transaction's EIP-155 ``v`` for this chain.

    With auto-mining off, EthereumTester re-sends each pending transaction with its
    signature and checks ``v`` as one byte: true of unprotected transactions (27/28) and of
    typed ones' y-parity, but a legacy transaction for chain 0x504F4C45 has a ``v`` of
    2 * chain id + 35 or 36, and the PoLe VM refuses the unprotected kind.
    """

    @staticmethod
    def validate_inbound_transaction(value: dict, txn_internal_type: str) -> None:
        if txn_internal_type == "send_signed" and value.get("v") in EIP155_V:
            value = {**value, "v": value["v"] - (CHAIN_ID * 2 + 8)}  # the recovery id as 27/28
        validate_transaction(value, txn_internal_type)


class PoLeEthereumTester(EthereumTester):
    """EthereumTester on a fresh ``PoLeEVMBackend`` with the ``PoLeValidator``."""

    def __init__(
        self,
        backend: Optional[PyEVMBackend] = None,
        validator: Optional[DefaultValidator] = None,
        normalizer: Any = None,
        auto_mine_transactions: bool = True,
    ) -> None:
        super().__init__(
            backend=backend if backend is not None else PoLeEVMBackend(),
            validator=validator if validator is not None else PoLeValidator(),
            normalizer=normalizer,
            auto_mine_transactions=auto_mine_transactions,
        )


class ExecutionReverted(Exception):
    """Raised by an endpoint to answer a JSON-RPC revert error (carried in ``rpc_error``)."""

    def __init__(self, data: bytes) -> None:
        reason = revert_reason(data)
        message = "execution reverted" if reason is None else f"execution reverted: {reason}"
        super().__init__(message)
        self.rpc_error = {"code": 3, "message": message, "data": "0x" + data.hex()}


def reverts_as_rpc_errors(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a revert in ``eth_call``/``eth_estimateGas`` into a node's error answer.

    web3's stock tester raises eth-tester's ``TransactionFailed`` instead; a node answers
    code 3 with the revert output, from which web3 raises ``ContractLogicError`` (or its
    custom-error and panic subclasses).
    """

    def answer(ethereum_tester: EthereumTester, params: Any) -> Any:
        try:
            return endpoint(ethereum_tester, params)
        except RevertedCall as reverted:  # eth_call
            raise ExecutionReverted(reverted.data) from reverted
        except TransactionFailed as failed:  # eth_estimateGas wraps py-evm's Revert
            cause = failed.args[0] if failed.args else None
            if isinstance(cause, Revert):
                raise ExecutionReverted(cause.args[0] if cause.args else b"") from failed
            raise

    return answer


#: web3's tester endpoints, answering for the PoLe chain id and with node-style reverts.
POLE_API_ENDPOINTS = {
    **API_ENDPOINTS,
    "eth": {
        **API_ENDPOINTS["eth"],
        "chainId": static_return(CHAIN_ID),
        "call": reverts_as_rpc_errors(API_ENDPOINTS["eth"]["call"]),
        "estimateGas": reverts_as_rpc_errors(API_ENDPOINTS["eth"]["estimateGas"]),
    },
    "net": {**API_ENDPOINTS["net"], "version": static_return(str(CHAIN_ID))},
}


class PoLeTesterProvider(EthereumTesterProvider):
    """web3's in-process tester provider on the PoLe dev chain (chain id 0x504F4C45)."""

    def __init__(self, ethereum_tester: Optional[EthereumTester] = None) -> None:
        super().__init__(
            ethereum_tester if ethereum_tester is not None else PoLeEthereumTester(),
            api_endpoints=POLE_API_ENDPOINTS,
        )

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        try:
            return super().make_request(method, params)
        except ExecutionReverted as reverted:
            response_id = repr(self._current_request_id)
            self._current_request_id += 1
            return cast(
                RPCResponse, {"id": response_id, "jsonrpc": "2.0", "error": reverted.rpc_error}
            )


def pole_tester_web3(ethereum_tester: Optional[EthereumTester] = None) -> Web3:
    """A Web3 on a fresh in-memory PoLe dev chain (or on ``ethereum_tester``'s chain)."""
    return Web3(PoLeTesterProvider(ethereum_tester))
