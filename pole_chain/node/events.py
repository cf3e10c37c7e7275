"""Who hears about new heads and newly pooled transactions.

The RPC layer's filters (eth_newBlockFilter, eth_newPendingTransactionFilter, log filters)
and the background miners react to chain events without the services that cause them
knowing who listens. A failing listener is logged and never stops block production.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from eth.abc import BlockAPI, SignedTransactionAPI

log = logging.getLogger("pole.node")

HeadListener = Callable[[Sequence[BlockAPI]], None]
PendingListener = Callable[[SignedTransactionAPI], None]


class NodeEvents:
    """Listeners for head changes and admitted transactions (called under the node lock)."""

    def __init__(self) -> None:
        self._heads: list[HeadListener] = []
        self._pending: list[PendingListener] = []

    def subscribe_heads(self, listener: HeadListener) -> None:
        """`listener(blocks)` after each head change, with the newly canonical blocks."""
        self._heads.append(listener)

    def subscribe_pending(self, listener: PendingListener) -> None:
        """`listener(tx)` for every transaction admitted to the mempool."""
        self._pending.append(listener)

    def new_heads(self, blocks: Sequence[BlockAPI]) -> None:
        _notify(self._heads, tuple(blocks))

    def pending(self, transaction: SignedTransactionAPI) -> None:
        _notify(self._pending, transaction)


def _notify(listeners: Sequence[Callable[[Any], None]], payload: Any) -> None:
    for listener in listeners:
        try:
            listener(payload)
        except Exception:
            log.exception("listener %r failed", listener)
