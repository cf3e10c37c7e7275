"""The transaction pool: signed transactions waiting for a block.

A transaction enters only after the checks a block would make against the current head state
(chain id, signature, nonce, balance, gas) pass, so a block built from `Mempool.executable`
rarely rejects anything. Per sender, transactions are kept by nonce: those with consecutive
nonces from the account nonce on are executable ("pending"), those above a nonce gap wait
("queued") until the gap closes. The same (sender, nonce) is replaced only by a transaction
paying at least PRICE_BUMP_PERCENT more on both fee caps, as in geth.

Limits are geth's defaults (core/txpool/legacypool DefaultConfig), so a wallet or script that
works against geth works here (docs/RPC.md, "Transaction pool"):
- GLOBAL_SLOTS executable transactions in all; when they are taken, an account holding
  fewer than ACCOUNT_SLOTS takes the top slot of the account holding the most;
- ACCOUNT_QUEUE queued transactions per account and GLOBAL_QUEUE in all; a queued
  transaction waits at most QUEUE_LIFETIME seconds;
- a transaction that fills an account's nonce gap (it is executable) is always admitted:
  if the pool is full it takes the slot of that account's highest queued nonce, so a full
  queue can never lock its account out.
Each refusal names the limit it hit.

All methods are thread-safe: the RPC threads add, the block producer reads and prunes.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from eth.abc import SignedTransactionAPI, StateAPI
from eth_typing import Address, Hash32
from eth_utils import ValidationError, encode_hex, to_checksum_address

from vm_hooks.vm import WrongChainIdError, validate_chain_id

#: Largest encoded transaction accepted (geth's txMaxSize).
MAX_TRANSACTION_SIZE = 128 * 1024
#: A replacement must raise both the fee cap and the tip cap by at least this much.
PRICE_BUMP_PERCENT = 10
#: Executable transactions an account keeps when the pool is full (geth AccountSlots).
ACCOUNT_SLOTS = 16
#: Executable transactions in all (geth GlobalSlots, 4096 + 1024).
GLOBAL_SLOTS = 5120
#: Transactions above a nonce gap, per account and in all (geth AccountQueue, GlobalQueue).
ACCOUNT_QUEUE = 64
GLOBAL_QUEUE = 1024
#: Seconds a transaction above a nonce gap waits before it is dropped (geth Lifetime, 3 h).
QUEUE_LIFETIME = 3 * 60 * 60

BLOB_TRANSACTION_TYPE = 3


@dataclass(frozen=True)
class PoolLimits:
    """The pool's bounds (geth's defaults; tests shrink them)."""

    account_slots: int = ACCOUNT_SLOTS
    global_slots: int = GLOBAL_SLOTS
    account_queue: int = ACCOUNT_QUEUE
    global_queue: int = GLOBAL_QUEUE
    queue_lifetime: float = QUEUE_LIFETIME


class TransactionRejected(Exception):
    """A transaction the node refuses; the message says why and reaches the RPC caller."""


@dataclass(frozen=True)
class PoolEntry:
    transaction: SignedTransactionAPI
    sender: Address
    arrival: int
    added_at: float

    @property
    def nonce(self) -> int:
        return self.transaction.nonce


@dataclass
class _Account:
    """One sender's pooled transactions; `base` is its account nonce at the latest check."""

    base: int
    by_nonce: dict[int, PoolEntry] = field(default_factory=dict)
    pending: int = 0  # consecutive nonces from `base`: executable

    @property
    def queued(self) -> int:
        return len(self.by_nonce) - self.pending

    @property
    def next_nonce(self) -> int:
        return self.base + self.pending

    def recount(self) -> None:
        nonce = self.base
        while nonce in self.by_nonce:
            nonce += 1
        self.pending = nonce - self.base

    def top(self) -> PoolEntry:
        """The entry of highest nonce (the first to go when the account must give one up)."""
        return self.by_nonce[max(self.by_nonce)]


def effective_tip(transaction: SignedTransactionAPI, base_fee: int) -> int:
    """What the block producer earns per gas: min(tip cap, fee cap - base fee)."""
    return min(transaction.max_priority_fee_per_gas, transaction.max_fee_per_gas - base_fee)


def _bumped(old: int) -> int:
    return old + (old * PRICE_BUMP_PERCENT + 99) // 100


def check_transaction(
    tx: SignedTransactionAPI, chain_id: int, *, block_gas_limit: int, base_fee: int
) -> Address:
    """The checks that need no state (encoding, chain id, signature, gas, fees); the sender."""
    size = len(tx.encode())
    if size > MAX_TRANSACTION_SIZE:
        raise TransactionRejected(
            f"oversized data: transaction size {size}, limit {MAX_TRANSACTION_SIZE}"
        )
    if tx.type_id == BLOB_TRANSACTION_TYPE:
        raise TransactionRejected("blob transactions (type 3) are not supported")
    try:
        validate_chain_id(tx, chain_id)  # the VM's own rule, applied at admission
    except WrongChainIdError as exc:
        raise TransactionRejected(str(exc)) from exc
    try:
        tx.check_signature_validity()
        sender = tx.sender
    except Exception as exc:  # eth_keys raises several types for a bad signature
        raise TransactionRejected(f"invalid sender signature: {exc}") from exc
    if tx.gas < tx.intrinsic_gas:
        raise TransactionRejected(
            f"intrinsic gas too low: gas {tx.gas}, minimum needed {tx.intrinsic_gas}"
        )
    try:
        tx.validate()
    except ValidationError as exc:
        raise TransactionRejected(f"invalid transaction: {exc}") from exc
    if tx.gas > block_gas_limit:
        raise TransactionRejected(
            f"exceeds block gas limit: gas {tx.gas}, limit {block_gas_limit}"
        )
    if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
        raise TransactionRejected(
            "max priority fee per gas higher than max fee per gas: "
            f"maxPriorityFeePerGas {tx.max_priority_fee_per_gas}, "
            f"maxFeePerGas {tx.max_fee_per_gas}"
        )
    if tx.max_fee_per_gas < base_fee:
        raise TransactionRejected(
            "max fee per gas less than block base fee: "
            f"maxFeePerGas {tx.max_fee_per_gas}, baseFee {base_fee}"
        )
    return sender


def check_against_state(tx: SignedTransactionAPI, sender: Address, state: StateAPI) -> int:
    """Nonce not used yet, balance covers gas * fee cap + value; returns the account nonce."""
    account_nonce = state.get_nonce(sender)
    if tx.nonce < account_nonce:
        raise TransactionRejected(
            f"nonce too low: next nonce {account_nonce}, tx nonce {tx.nonce}"
        )
    balance = state.get_balance(sender)
    cost = tx.gas * tx.max_fee_per_gas + tx.value
    if balance < cost:
        raise TransactionRejected(
            "insufficient funds for gas * price + value: "
            f"address {to_checksum_address(sender)} have {balance} want {cost}"
        )
    return account_nonce


class Mempool:
    """Pending and queued transactions, by hash and by (sender, nonce)."""

    def __init__(
        self,
        chain_id: int,
        *,
        limits: PoolLimits = PoolLimits(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chain_id = chain_id
        self.limits = limits
        self._clock = clock
        self._lock = threading.RLock()
        self._by_hash: dict[Hash32, PoolEntry] = {}
        self._accounts: dict[Address, _Account] = {}
        self._arrivals = itertools.count()

    # -- admission ---------------------------------------------------------------------

    def add(
        self,
        transaction: SignedTransactionAPI,
        state: StateAPI,
        *,
        block_gas_limit: int,
        base_fee: int = 0,
    ) -> SignedTransactionAPI | None:
        """Admit `transaction` checked against `state` (the head state).

        Returns the transaction it replaced, if any. Raises TransactionRejected.
        """
        tx = transaction
        sender = check_transaction(
            tx, self.chain_id, block_gas_limit=block_gas_limit, base_fee=base_fee
        )
        account_nonce = check_against_state(tx, sender, state)
        with self._lock:
            self._expire_queued()
            if tx.hash in self._by_hash:
                raise TransactionRejected(f"already known: {encode_hex(tx.hash)}")
            account = self._accounts.get(sender) or _Account(base=account_nonce)
            account.base = account_nonce
            account.recount()
            old = account.by_nonce.get(tx.nonce)
            if old is not None:
                _check_replacement(old.transaction, tx)
                self._drop(old)
            elif tx.nonce == account.next_nonce:
                self._make_room_for_executable(sender, account)
            else:
                self._make_room_for_queued(sender, account, tx.nonce)
            self._insert(PoolEntry(tx, sender, next(self._arrivals), self._clock()), account)
            return old.transaction if old is not None else None

    def readmit(
        self, transactions: Iterable[SignedTransactionAPI], state: StateAPI, block_gas_limit: int
    ) -> None:
        """Pool again what a revert or a reorganisation took out; refusals are dropped."""
        for tx in transactions:
            try:
                self.add(tx, state, block_gas_limit=block_gas_limit, base_fee=0)
            except TransactionRejected:
                pass

    # -- limits (callers hold self._lock) ----------------------------------------------

    def _make_room_for_executable(self, sender: Address, account: _Account) -> None:
        limits = self.limits
        pending = sum(a.pending for a in self._accounts.values())
        if pending < limits.global_slots:
            return
        if account.queued:  # it fills the gap: the account's highest queued nonce makes room
            self._drop(account.top())
            return
        richest = max(self._accounts.values(), key=lambda a: a.pending, default=None)
        if (
            account.pending < limits.account_slots
            and richest is not None
            and richest.pending > limits.account_slots
        ):
            self._drop(richest.top())
            return
        raise TransactionRejected(
            f"transaction pool is full: {pending} executable transactions (limit GLOBAL_SLOTS "
            f"{limits.global_slots}); account {to_checksum_address(sender)} already has "
            f"{account.pending} (each account keeps ACCOUNT_SLOTS {limits.account_slots})"
        )

    def _make_room_for_queued(self, sender: Address, account: _Account, nonce: int) -> None:
        limits = self.limits
        if account.queued >= limits.account_queue:
            top = account.top()
            if nonce > top.nonce:
                raise TransactionRejected(
                    f"account {to_checksum_address(sender)} queue is full: {account.queued} "
                    f"transactions wait above a nonce gap (limit ACCOUNT_QUEUE "
                    f"{limits.account_queue}); send nonce {account.next_nonce} first"
                )
            self._drop(top)  # a lower nonce is closer to executable than the top one
            return
        queued = sum(a.queued for a in self._accounts.values())
        if queued < limits.global_queue:
            return
        longest = max(self._accounts.values(), key=lambda a: a.queued)
        if longest.queued <= account.queued + 1:
            raise TransactionRejected(
                f"transaction pool queue is full: {queued} transactions wait above a nonce "
                f"gap (limit GLOBAL_QUEUE {limits.global_queue})"
            )
        self._drop(longest.top())

    def _expire_queued(self) -> list[PoolEntry]:
        """Drop queued transactions older than the queue lifetime."""
        oldest_allowed = self._clock() - self.limits.queue_lifetime
        expired = [
            entry
            for account in self._accounts.values()
            for nonce, entry in account.by_nonce.items()
            if nonce >= account.next_nonce and entry.added_at <= oldest_allowed
        ]
        for entry in expired:
            self._drop(entry)
        return expired

    def expire(self) -> list[SignedTransactionAPI]:
        """Drop and return the queued transactions that outlived QUEUE_LIFETIME."""
        with self._lock:
            return [entry.transaction for entry in self._expire_queued()]

    # -- reading -----------------------------------------------------------------------

    def executable(self, state: StateAPI, base_fee: int = 0) -> list[SignedTransactionAPI]:
        """Transactions a block on top of `state` can include, in inclusion order.

        Per sender: consecutive nonces from the account nonce on, stopping at the first gap
        or at the first transaction whose fee cap is below `base_fee`. Across senders: the
        next transaction of highest effective tip first, ties to the earliest arrival
        (a heap merge, so one sender's nonce order is never broken).
        """
        with self._lock:
            runs: list[list[PoolEntry]] = []
            for sender, account in self._accounts.items():
                queue = account.by_nonce
                nonce = state.get_nonce(sender)
                run = []
                while nonce in queue and queue[nonce].transaction.max_fee_per_gas >= base_fee:
                    run.append(queue[nonce])
                    nonce += 1
                if run:
                    runs.append(run)

        def key(entry: PoolEntry) -> tuple[int, int]:
            return (-effective_tip(entry.transaction, base_fee), entry.arrival)

        heap = [(key(run[0]), index, 0) for index, run in enumerate(runs)]
        heapq.heapify(heap)
        ordered = []
        while heap:
            _, index, position = heapq.heappop(heap)
            run = runs[index]
            ordered.append(run[position].transaction)
            if position + 1 < len(run):
                heapq.heappush(heap, (key(run[position + 1]), index, position + 1))
        return ordered

    def pending_nonce(self, sender: Address, account_nonce: int) -> int:
        """The nonce after `sender`'s consecutive pooled transactions (for "pending")."""
        with self._lock:
            account = self._accounts.get(sender)
            queue = account.by_nonce if account is not None else {}
            nonce = account_nonce
            while nonce in queue:
                nonce += 1
            return nonce

    def counts(self) -> tuple[int, int]:
        """(executable, queued) transactions, as of each account's latest nonce check."""
        with self._lock:
            accounts = self._accounts.values()
            return sum(a.pending for a in accounts), sum(a.queued for a in accounts)

    def get(self, tx_hash: Hash32) -> SignedTransactionAPI | None:
        with self._lock:
            entry = self._by_hash.get(tx_hash)
            return entry.transaction if entry else None

    def sender_of(self, tx_hash: Hash32) -> Address | None:
        with self._lock:
            entry = self._by_hash.get(tx_hash)
            return entry.sender if entry else None

    def transactions(self) -> list[SignedTransactionAPI]:
        """Every pooled transaction, in arrival order."""
        with self._lock:
            entries = sorted(self._by_hash.values(), key=lambda e: e.arrival)
            return [entry.transaction for entry in entries]

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        with self._lock:
            return tx_hash in self._by_hash

    # -- removal -----------------------------------------------------------------------

    def remove(self, tx_hashes: Iterable[Hash32]) -> None:
        with self._lock:
            for tx_hash in tx_hashes:
                entry = self._by_hash.get(tx_hash)
                if entry is not None:
                    self._drop(entry)

    def prune(self, state: StateAPI) -> list[SignedTransactionAPI]:
        """Drop what a new head made stale (nonce below the account nonce); return it.

        Queued transactions past their lifetime go too (they are not returned).
        """
        with self._lock:
            stale = []
            for sender, account in list(self._accounts.items()):
                account.base = state.get_nonce(sender)
                stale.extend(e for n, e in account.by_nonce.items() if n < account.base)
                account.recount()
            for entry in stale:
                self._drop(entry)
            self._expire_queued()
            return [entry.transaction for entry in stale]

    def clear(self) -> list[SignedTransactionAPI]:
        with self._lock:
            everything = self.transactions()
            self._by_hash.clear()
            self._accounts.clear()
            return everything

    def _insert(self, entry: PoolEntry, account: _Account) -> None:
        account.by_nonce[entry.nonce] = entry
        account.recount()
        self._accounts[entry.sender] = account
        self._by_hash[entry.transaction.hash] = entry

    def _drop(self, entry: PoolEntry) -> None:
        del self._by_hash[entry.transaction.hash]
        account = self._accounts[entry.sender]
        del account.by_nonce[entry.nonce]
        if account.by_nonce:
            account.recount()
        else:
            del self._accounts[entry.sender]


def _check_replacement(old: SignedTransactionAPI, new: SignedTransactionAPI) -> None:
    if new.max_fee_per_gas < _bumped(old.max_fee_per_gas) or new.max_priority_fee_per_gas < (
        _bumped(old.max_priority_fee_per_gas)
    ):
        raise TransactionRejected(
            "replacement transaction underpriced: both maxFeePerGas and "
            f"maxPriorityFeePerGas must rise by at least {PRICE_BUMP_PERCENT}% "
            f"over {encode_hex(old.hash)}"
        )
