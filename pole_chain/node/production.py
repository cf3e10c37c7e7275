"""Block production on this node, and what every new head means for the pool.

Dev blocks (automine, evm_mine, interval mining), idle blocks and PoLe blocks all end the
same way: included transactions leave the pool, stale ones are pruned, transactions of blocks
a reorganisation dropped get another chance, and listeners hear of the new head. That shared
ending lives here once; the services that build blocks (sealing, background miners, block
import) call it. Callers hold the node lock.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI
from eth_typing import Address
from eth_utils import encode_hex

from pole_chain.chain.block_production import ProducedBlock, produce_dev_block
from pole_chain.node.chain_reader import ChainReader
from pole_chain.node.dev_clock import DevClock
from pole_chain.node.events import NodeEvents
from pole_chain.node.mempool import Mempool, TransactionRejected
from vm_hooks.chain import PoLeChain

log = logging.getLogger("pole.node")

#: automine: blocks built per submission at most (more only if the gas limit splits them).
MAX_AUTOMINE_BLOCKS = 16


class BlockProducer:
    """Builds dev blocks from the pool and applies every head change to the pool."""

    def __init__(
        self,
        chain: PoLeChain,
        reader: ChainReader,
        mempool: Mempool,
        clock: DevClock,
        events: NodeEvents,
        *,
        coinbase: Address,
        automine: bool,
    ) -> None:
        self._chain = chain
        self._reader = reader
        self._mempool = mempool
        self._clock = clock
        self._events = events
        self.coinbase = coinbase
        self.automine = automine

    def candidates(self, parent: BlockHeaderAPI) -> list[SignedTransactionAPI]:
        """Executable pool transactions that fit a block on `parent` (by their gas limits)."""
        gas_limit = self._reader.child_header(parent).gas_limit
        state = self._reader.state_at(parent)
        selected, gas, skipped_senders = [], 0, set()
        for tx in self._mempool.executable(state, self._reader.next_base_fee(parent)):
            sender = tx.sender
            if sender in skipped_senders:
                continue
            if gas + tx.gas > gas_limit:
                skipped_senders.add(sender)  # its later nonces wait for the next block
                continue
            selected.append(tx)
            gas += tx.gas
        return selected

    def produce_dev_block(self, timestamp: int | None = None) -> ProducedBlock:
        """Seal a dev block on the head from the pool, at `timestamp` or the clock's time."""
        head = self._reader.head()
        when, explicit = self._clock.timestamp_for(head, timestamp)
        produced = produce_dev_block(
            self._chain, self.candidates(head), timestamp=when, coinbase=self.coinbase
        )
        if explicit:
            self._clock.continue_from(when)
        self.after_produced(produced)
        return produced

    def automine_after(self, submitted: SignedTransactionAPI) -> None:
        """Mine until the pool has nothing executable; raise if `submitted` was left out."""
        for _ in range(MAX_AUTOMINE_BLOCKS):
            head = self._reader.head()
            state = self._reader.state_at(head)
            if not self._mempool.executable(state, self._reader.next_base_fee(head)):
                return
            produced = self.produce_dev_block()
            for tx, reason in produced.rejected:
                if tx.hash == submitted.hash:
                    raise TransactionRejected(reason)
            if not produced.included:
                return

    def after_produced(self, produced: ProducedBlock) -> None:
        """A block this node built was stored: update the pool, log it."""
        self._mempool.remove(tx.hash for tx in produced.included)
        for tx, reason in produced.rejected:
            log.info("block #%d left out %s: %s", produced.block.number, encode_hex(tx.hash), reason)
        self._mempool.remove(tx.hash for tx, _ in produced.rejected)
        self.after_new_head(produced.new_canonical, produced.old_canonical)
        log.info(
            "sealed block #%d %s with %d transaction(s)",
            produced.block.number,
            encode_hex(produced.block.hash),
            len(produced.included),
        )

    def after_new_head(
        self, new_canonical: Sequence[BlockAPI], old_canonical: Sequence[BlockAPI]
    ) -> None:
        """Prune the pool for the new head, re-pool what a reorganisation dropped, notify."""
        head = self._reader.head()
        state = self._reader.state_at(head)
        self._mempool.prune(state)
        if old_canonical:  # a reorganisation: give the dropped transactions another chance
            kept = {tx.hash for block in new_canonical for tx in block.transactions}
            dropped = [
                tx for block in old_canonical for tx in block.transactions if tx.hash not in kept
            ]
            self._mempool.readmit(dropped, state, self._reader.child_header(head).gas_limit)
        if new_canonical:
            self._events.new_heads(new_canonical)
