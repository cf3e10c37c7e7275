"""Both directions between JSON-RPC values and py-evm objects.

Inbound: parsers for parameters (`address`, `quantity`, `block_id`, `transaction_request`,
`log_filter`, ...). Each takes the decoded JSON value and returns a Python value, or raises
InvalidParam with what was expected; the dispatcher adds which parameter it was.

Outbound: the Ethereum JSON-RPC shapes (hex quantities, 0x data, lowercase addresses) for
blocks, transactions, receipts and logs, the way geth writes them.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from eth._utils.address import generate_contract_address
from eth.abc import BlockAPI, BlockHeaderAPI, LogAPI, ReceiptAPI, SignedTransactionAPI
from eth.constants import CREATE_CONTRACT_ADDRESS
from eth.vm.forks.cancun.constants import MIN_BLOB_BASE_FEE
from eth.vm.forks.cancun.state import fake_exponential
from eth.vm.forks.prague.constants import (
    BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE,
    MAX_BLOB_GAS_PER_BLOCK,
)
from eth_typing import Address, Hash32
from eth_utils import decode_hex, encode_hex

from pole_chain.rpc.dispatch import InvalidParam

UINT256_MAX = 2**256 - 1
BLOCK_TAGS = ("latest", "earliest", "pending", "safe", "finalized")
_HEX = re.compile(r"0x[0-9a-fA-F]*")

# --------------------------------------------------------------------------------------
# Inbound
# --------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def data(value: Any) -> bytes:
    """0x-prefixed hex of any even length ("0x" is empty)."""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise InvalidParam(f"expected 0x-prefixed hex data, got {_describe(value)}")
    if len(value) % 2:
        raise InvalidParam(f"hex data has an odd number of digits: {_describe(value)}")
    return decode_hex(value)


def _fixed_bytes(size: int, what: str) -> Callable[[Any], bytes]:
    def parse(value: Any) -> bytes:
        if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) != 2 + 2 * size:
            raise InvalidParam(
                f"expected {what} (0x and {2 * size} hex digits), got {_describe(value)}"
            )
        return decode_hex(value)

    return parse


address: Callable[[Any], Address] = _fixed_bytes(20, "a 20-byte address")  # type: ignore
hash32: Callable[[Any], Hash32] = _fixed_bytes(32, "a 32-byte hash")  # type: ignore


def quantity(value: Any) -> int:
    """A non-negative integer: 0x-hex (geth's QUANTITY) or, leniently, a JSON number."""
    if isinstance(value, bool):
        raise InvalidParam(f"expected a hex quantity, got {_describe(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _HEX.fullmatch(value) and len(value) > 2:
        number = int(value, 16)
    else:
        raise InvalidParam(f"expected a 0x-prefixed hex quantity, got {_describe(value)}")
    if not 0 <= number <= UINT256_MAX:
        raise InvalidParam(f"quantity out of range: {_describe(value)}")
    return number


def filter_id(value: Any) -> str:
    if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) > 66:
        raise InvalidParam(f"expected a filter id (0x-prefixed hex), got {_describe(value)}")
    return value.lower()


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidParam(f"expected true or false, got {_describe(value)}")
    return value


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_optional(value: Any) -> Any:
        return None if value is None else parse(value)

    return parse_optional


def list_of(parse: Callable[[Any], Any], *, max_length: int) -> Callable[[Any], list[Any]]:
    def parse_list(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise InvalidParam(f"expected a JSON array, got {_describe(value)}")
        if len(value) > max_length:
            raise InvalidParam(f"at most {max_length} entries, got {len(value)}")
        parsed = []
        for index, item in enumerate(value):
            try:
                parsed.append(parse(item))
            except InvalidParam as exc:
                raise InvalidParam(f"entry {index}: {exc}") from exc
        return parsed

    return parse_list


@dataclass(frozen=True)
class BlockRef:
    """A block identifier: a tag, a number, or a hash (EIP-1898)."""

    tag: str | None = None
    number: int | None = None
    hash: Hash32 | None = None
    require_canonical: bool = False

    def describe(self) -> str:
        if self.tag is not None:
            return self.tag
        if self.number is not None:
            return f"#{self.number}"
        return encode_hex(self.hash) if self.hash else "?"


LATEST = BlockRef(tag="latest")


def block_number_or_tag(value: Any) -> BlockRef:
    if isinstance(value, str) and value in BLOCK_TAGS:
        return BlockRef(tag=value)
    try:
        return BlockRef(number=quantity(value))
    except InvalidParam:
        raise InvalidParam(
            f"expected a block number or one of {', '.join(BLOCK_TAGS)}, got {_describe(value)}"
        ) from None


def block_id(value: Any) -> BlockRef:
    """A tag, a number, a 32-byte block hash, or an EIP-1898 object."""
    if isinstance(value, dict):
        if "blockHash" in value and "blockNumber" not in value:
            return BlockRef(
                hash=hash32(value["blockHash"]),
                require_canonical=boolean(value.get("requireCanonical", False)),
            )
        if "blockNumber" in value and "blockHash" not in value:
            return block_number_or_tag(value["blockNumber"])
        raise InvalidParam('expected an object with exactly one of "blockHash", "blockNumber"')
    if isinstance(value, str) and len(value) == 66:
        return BlockRef(hash=hash32(value))
    try:
        return block_number_or_tag(value)
    except InvalidParam:
        raise InvalidParam(
            f"expected a block number, a block hash or one of {', '.join(BLOCK_TAGS)}, "
            f"got {_describe(value)}"
        ) from None


@dataclass(frozen=True)
class TransactionRequest:
    """The transaction object of eth_call, eth_estimateGas and eth_sendTransaction."""

    sender: Address | None = None
    to: Address | None = None
    gas: int | None = None
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    value: int = 0
    data: bytes = b""
    nonce: int | None = None
    access_list: tuple[tuple[Address, tuple[int, ...]], ...] = ()
    chain_id: int | None = None
    type: int | None = None

    @property
    def is_dynamic_fee(self) -> bool:
        if self.type is not None:
            return self.type == 2
        return self.gas_price is None


_TRANSACTION_FIELDS = {
    "from", "to", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value",
    "data", "input", "nonce", "accessList", "chainId", "type",
}


def _access_list(value: Any) -> tuple[tuple[Address, tuple[int, ...]], ...]:
    if not isinstance(value, list):
        raise InvalidParam("accessList: expected a JSON array")
    entries = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("storageKeys", []), list):
            raise InvalidParam("accessList: entries are {address, storageKeys}")
        keys = tuple(int.from_bytes(hash32(key), "big") for key in item.get("storageKeys", []))
        entries.append((address(item.get("address")), keys))
    return tuple(entries)


def transaction_request(value: Any) -> TransactionRequest:
    if not isinstance(value, dict):
        raise InvalidParam(f"expected a transaction object, got {_describe(value)}")
    unknown = set(value) - _TRANSACTION_FIELDS
    if unknown:
        raise InvalidParam(f"unknown transaction field(s): {', '.join(sorted(unknown))}")

    def field(name: str, parse: Callable[[Any], Any]) -> Any:
        if value.get(name) is None:
            return None
        try:
            return parse(value[name])
        except InvalidParam as exc:
            raise InvalidParam(f"{name}: {exc}") from exc

    payload = field("input", data)
    legacy_payload = field("data", data)
    if payload is not None and legacy_payload is not None and payload != legacy_payload:
        raise InvalidParam('both "data" and "input" are set and they differ')
    request = TransactionRequest(
        sender=field("from", address),
        to=field("to", address),
        gas=field("gas", quantity),
        gas_price=field("gasPrice", quantity),
        max_fee_per_gas=field("maxFeePerGas", quantity),
        max_priority_fee_per_gas=field("maxPriorityFeePerGas", quantity),
        value=field("value", quantity) or 0,
        data=payload if payload is not None else legacy_payload or b"",
        nonce=field("nonce", quantity),
        access_list=field("accessList", _access_list) or (),
        chain_id=field("chainId", quantity),
        type=field("type", quantity),
    )
    if request.gas_price is not None and (
        request.max_fee_per_gas is not None or request.max_priority_fee_per_gas is not None
    ):
        raise InvalidParam("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
    if request.type is not None and request.type not in (0, 1, 2):
        raise InvalidParam(f"unsupported transaction type {request.type} (0, 1 or 2)")
    return request


@dataclass(frozen=True)
class AccountOverride:
    balance: int | None = None
    nonce: int | None = None
    code: bytes | None = None
    state: dict[int, int] | None = None  # replaces all storage
    state_diff: dict[int, int] | None = None  # changes the given slots


def _slots(value: Any) -> dict[int, int]:
    if not isinstance(value, dict):
        raise InvalidParam("expected an object of slot -> value")
    return {
        int.from_bytes(hash32(slot), "big"): int.from_bytes(hash32(word), "big")
        for slot, word in value.items()
    }


def state_overrides(value: Any) -> dict[Address, AccountOverride]:
    """geth's eth_call state override set: {address: {balance, nonce, code, state|stateDiff}}."""
    if not isinstance(value, dict):
        raise InvalidParam(f"expected a state override object, got {_describe(value)}")
    overrides = {}
    for key, override in value.items():
        account = address(key)
        if not isinstance(override, dict):
            raise InvalidParam(f"override for {key}: expected an object")
        unknown = set(override) - {"balance", "nonce", "code", "state", "stateDiff"}
        if unknown:
            raise InvalidParam(f"override for {key}: unknown field(s) {', '.join(sorted(unknown))}")
        if "state" in override and "stateDiff" in override:
            raise InvalidParam(f"override for {key}: both state and stateDiff given")
        overrides[account] = AccountOverride(
            balance=quantity(override["balance"]) if "balance" in override else None,
            nonce=quantity(override["nonce"]) if "nonce" in override else None,
            code=data(override["code"]) if "code" in override else None,
            state=_slots(override["state"]) if "state" in override else None,
            state_diff=_slots(override["stateDiff"]) if "stateDiff" in override else None,
        )
    return overrides


@dataclass(frozen=True)
class LogFilter:
    """eth_getLogs / eth_newFilter criteria."""

    from_block: BlockRef = LATEST
    to_block: BlockRef = LATEST
    block_hash: Hash32 | None = None
    addresses: frozenset[bytes] = frozenset()
    topics: tuple[frozenset[bytes] | None, ...] = ()

    def matches(self, log_address: bytes, log_topics: Sequence[bytes]) -> bool:
        if self.addresses and log_address not in self.addresses:
            return False
        for position, alternatives in enumerate(self.topics):
            if alternatives is None:
                continue
            if position >= len(log_topics) or log_topics[position] not in alternatives:
                return False
        return True


MAX_FILTER_ADDRESSES = 1000
MAX_TOPIC_POSITIONS = 4
MAX_TOPIC_ALTERNATIVES = 1000


def log_filter(value: Any) -> LogFilter:
    if not isinstance(value, dict):
        raise InvalidParam(f"expected a filter object, got {_describe(value)}")
    unknown = set(value) - {"fromBlock", "toBlock", "blockHash", "address", "topics"}
    if unknown:
        raise InvalidParam(f"unknown filter field(s): {', '.join(sorted(unknown))}")
    block_hash = None
    if value.get("blockHash") is not None:
        if value.get("fromBlock") is not None or value.get("toBlock") is not None:
            raise InvalidParam("blockHash cannot be combined with fromBlock/toBlock")
        block_hash = hash32(value["blockHash"])
    raw_addresses = value.get("address")
    if raw_addresses is None:
        addresses: frozenset[bytes] = frozenset()
    elif isinstance(raw_addresses, list):
        addresses = frozenset(list_of(address, max_length=MAX_FILTER_ADDRESSES)(raw_addresses))
    else:
        addresses = frozenset([address(raw_addresses)])
    raw_topics = value.get("topics") or []
    if not isinstance(raw_topics, list) or len(raw_topics) > MAX_TOPIC_POSITIONS:
        raise InvalidParam(f"topics: expected an array of at most {MAX_TOPIC_POSITIONS} entries")
    topics: list[frozenset[bytes] | None] = []
    for position, entry in enumerate(raw_topics):
        try:
            if entry is None:
                topics.append(None)
            elif isinstance(entry, list):
                alternatives = list_of(hash32, max_length=MAX_TOPIC_ALTERNATIVES)(entry)
                topics.append(frozenset(alternatives) if alternatives else None)
            else:
                topics.append(frozenset([hash32(entry)]))
        except InvalidParam as exc:
            raise InvalidParam(f"topics[{position}]: {exc}") from exc
    return LogFilter(
        from_block=block_number_or_tag(value["fromBlock"])
        if value.get("fromBlock") is not None
        else LATEST,
        to_block=block_number_or_tag(value["toBlock"])
        if value.get("toBlock") is not None
        else LATEST,
        block_hash=block_hash,
        addresses=addresses,
        topics=tuple(topics),
    )


def percentiles(value: Any) -> list[float]:
    if not isinstance(value, list) or len(value) > 100:
        raise InvalidParam("expected an array of at most 100 percentiles")
    previous = -1.0
    for entry in value:
        if isinstance(entry, bool) or not isinstance(entry, (int, float)) or not 0 <= entry <= 100:
            raise InvalidParam(f"percentiles are numbers from 0 to 100, got {_describe(entry)}")
        if entry < previous:
            raise InvalidParam("percentiles must be in ascending order")
        previous = entry
    return [float(entry) for entry in value]


# --------------------------------------------------------------------------------------
# Outbound
# --------------------------------------------------------------------------------------


def hex_int(number: int) -> str:
    return hex(number)


def hex_data(raw: bytes) -> str:
    return encode_hex(bytes(raw))


def hex_address(raw: bytes | None) -> str | None:
    if raw is None or raw == CREATE_CONTRACT_ADDRESS:
        return None
    return encode_hex(bytes(raw))


def hex_word(number: int) -> str:
    return encode_hex(number.to_bytes(32, "big"))


def topic_bytes(topic: int) -> bytes:
    return topic.to_bytes(32, "big")


def blob_base_fee(header: BlockHeaderAPI) -> int:
    excess = getattr(header, "excess_blob_gas", 0) or 0
    return fake_exponential(MIN_BLOB_BASE_FEE, excess, BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE)


def blob_gas_used_ratio(header: BlockHeaderAPI) -> float:
    return (getattr(header, "blob_gas_used", 0) or 0) / MAX_BLOB_GAS_PER_BLOCK


def format_header(header: BlockHeaderAPI, *, total_difficulty: int | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "number": hex_int(header.block_number),
        "hash": hex_data(header.hash),
        "parentHash": hex_data(header.parent_hash),
        "nonce": hex_data(header.nonce),
        "mixHash": hex_data(header.mix_hash),
        "sha3Uncles": hex_data(header.uncles_hash),
        "logsBloom": hex_data(header.bloom.to_bytes(256, "big")),
        "transactionsRoot": hex_data(header.transaction_root),
        "stateRoot": hex_data(header.state_root),
        "receiptsRoot": hex_data(header.receipt_root),
        "miner": hex_data(header.coinbase),
        "difficulty": hex_int(header.difficulty),
        "extraData": hex_data(header.extra_data),
        "gasLimit": hex_int(header.gas_limit),
        "gasUsed": hex_int(header.gas_used),
        "timestamp": hex_int(header.timestamp),
    }
    if total_difficulty is not None:
        fields["totalDifficulty"] = hex_int(total_difficulty)
    optional_fields = (
        ("base_fee_per_gas", "baseFeePerGas", hex_int),
        ("withdrawals_root", "withdrawalsRoot", hex_data),
        ("blob_gas_used", "blobGasUsed", hex_int),
        ("excess_blob_gas", "excessBlobGas", hex_int),
        ("parent_beacon_block_root", "parentBeaconBlockRoot", hex_data),
        ("requests_hash", "requestsHash", hex_data),
    )
    for attribute, key, encode in optional_fields:
        value = getattr(header, attribute, None)
        if value is not None:
            fields[key] = encode(value)
    return fields


def format_block(
    block: BlockAPI, *, full_transactions: bool, total_difficulty: int | None = None
) -> dict[str, Any]:
    fields = format_header(block.header, total_difficulty=total_difficulty)
    fields["size"] = hex_int(len(rlp.encode(block)))
    if full_transactions:
        fields["transactions"] = [
            format_transaction(tx, block.header, index)
            for index, tx in enumerate(block.transactions)
        ]
    else:
        fields["transactions"] = [hex_data(tx.hash) for tx in block.transactions]
    fields["uncles"] = [hex_data(uncle.hash) for uncle in block.uncles]
    withdrawals = getattr(block, "withdrawals", None)
    if withdrawals is not None:
        fields["withdrawals"] = [
            {
                "index": hex_int(w.index),
                "validatorIndex": hex_int(w.validator_index),
                "address": hex_data(w.address),
                "amount": hex_int(w.amount),
            }
            for w in withdrawals
        ]
    return fields


def effective_gas_price(tx: SignedTransactionAPI, base_fee: int | None) -> int:
    if base_fee is None:
        return tx.max_fee_per_gas
    return min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)


def format_transaction(
    tx: SignedTransactionAPI, header: BlockHeaderAPI | None = None, index: int | None = None
) -> dict[str, Any]:
    """A transaction object; `header` None means still pending."""
    type_id = tx.type_id or 0
    base_fee = getattr(header, "base_fee_per_gas", None) if header is not None else None
    fields: dict[str, Any] = {
        "hash": hex_data(tx.hash),
        "type": hex_int(type_id),
        "nonce": hex_int(tx.nonce),
        "blockHash": hex_data(header.hash) if header is not None else None,
        "blockNumber": hex_int(header.block_number) if header is not None else None,
        "transactionIndex": hex_int(index) if index is not None else None,
        "from": hex_data(tx.sender),
        "to": hex_address(tx.to),
        "value": hex_int(tx.value),
        "gas": hex_int(tx.gas),
        "input": hex_data(tx.data),
        "r": hex_int(tx.r),
        "s": hex_int(tx.s),
    }
    if type_id == 0:
        fields["gasPrice"] = hex_int(tx.gas_price)
        fields["v"] = hex_int(tx.v)
        if tx.chain_id is not None:
            fields["chainId"] = hex_int(tx.chain_id)
    else:
        fields["chainId"] = hex_int(tx.chain_id)
        fields["v"] = hex_int(tx.y_parity)
        fields["yParity"] = hex_int(tx.y_parity)
        fields["accessList"] = [
            {"address": hex_data(account), "storageKeys": [hex_word(key) for key in keys]}
            for account, keys in tx.access_list
        ]
        if type_id == 1:
            fields["gasPrice"] = hex_int(tx.gas_price)
        else:
            fields["maxFeePerGas"] = hex_int(tx.max_fee_per_gas)
            fields["maxPriorityFeePerGas"] = hex_int(tx.max_priority_fee_per_gas)
            fields["gasPrice"] = hex_int(
                effective_gas_price(tx, base_fee) if header is not None else tx.max_fee_per_gas
            )
        if type_id == 4:
            fields["authorizationList"] = [
                {
                    "chainId": hex_int(auth.chain_id),
                    "address": hex_data(auth.address),
                    "nonce": hex_int(auth.nonce),
                    "yParity": hex_int(auth.y_parity),
                    "r": hex_int(auth.r),
                    "s": hex_int(auth.s),
                }
                for auth in tx.authorization_list
            ]
    return fields


def format_log(
    log: LogAPI,
    *,
    header: BlockHeaderAPI,
    tx_hash: bytes,
    tx_index: int,
    log_index: int,
) -> dict[str, Any]:
    return {
        "address": hex_data(log.address),
        "topics": [hex_data(topic_bytes(topic)) for topic in log.topics],
        "data": hex_data(log.data),
        "blockNumber": hex_int(header.block_number),
        "blockHash": hex_data(header.hash),
        "blockTimestamp": hex_int(header.timestamp),
        "transactionHash": hex_data(tx_hash),
        "transactionIndex": hex_int(tx_index),
        "logIndex": hex_int(log_index),
        "removed": False,
    }


def format_receipt(
    tx: SignedTransactionAPI,
    receipt: ReceiptAPI,
    *,
    header: BlockHeaderAPI,
    index: int,
    previous_cumulative_gas: int,
    first_log_index: int,
) -> dict[str, Any]:
    contract_address = None
    if tx.to == CREATE_CONTRACT_ADDRESS:
        contract_address = hex_data(generate_contract_address(tx.sender, tx.nonce))
    base_fee = getattr(header, "base_fee_per_gas", None)
    status = 0 if receipt.state_root == b"" else 1
    return {
        "transactionHash": hex_data(tx.hash),
        "transactionIndex": hex_int(index),
        "blockHash": hex_data(header.hash),
        "blockNumber": hex_int(header.block_number),
        "from": hex_data(tx.sender),
        "to": hex_address(tx.to),
        "cumulativeGasUsed": hex_int(receipt.gas_used),
        "gasUsed": hex_int(receipt.gas_used - previous_cumulative_gas),
        "effectiveGasPrice": hex_int(effective_gas_price(tx, base_fee)),
        "contractAddress": contract_address,
        "logs": [
            format_log(
                log, header=header, tx_hash=tx.hash, tx_index=index, log_index=first_log_index + i
            )
            for i, log in enumerate(receipt.logs)
        ],
        "logsBloom": hex_data(receipt.bloom.to_bytes(256, "big")),
        "status": hex_int(status),
        "type": hex_int(tx.type_id or 0),
    }
