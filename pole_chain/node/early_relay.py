"""Which PoLe blocks gossip relays on their header's word, before the model is re-evaluated.

A PoLe block was relayed only once imported: each hop fetched what it lacked, re-evaluated
the model and imported the block under the node lock, then published it, so the last of
four nodes in a line paid three verifications in series (bench.propagation: median 0.83 s,
slowest 1.20 s). The network's rule is validation before relay with header-only seal checks
(issue #8; eth2 gossips blocks on the proposer's signature the same way), and a block whose
header passes them is now relayed at once, so every node verifies it at the same time.

Relaying before verification lets a bad block reach every node, and each node spends an
evaluation on it. So the header's word is taken only where nobody can mint it cheaply:
- the seal's own rules hold (signature, fields: `BlockIntake` checked them, an INVALID block
  never gets here);
- the release the seal names is held here and admits the block's commitment: releases are
  signed by the task's poster and admit at most 64 commitments, each announced by a miner;
- at most MAX_PER_COMMITMENT blocks per commitment are relayed this way (a miner re-seals
  when its parent is orphaned, on another parent): a miner signing the same model into a
  thousand headers gets two relayed, the rest are checked here first, as before.
Everything else takes the former path: held, imported, then published by this node. A
relayed block that fails its import blames nobody here (the relaying peers checked what
they could); it costs its sealer the block, like any invalid block.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from eth.abc import BlockAPI

from pole_chain.node.block_data import pole_seal
from pole_chain.node.solution_book import SolutionBook

#: Blocks per model commitment relayed before import (the first seal and one re-seal).
MAX_PER_COMMITMENT = 2
#: Commitments remembered (64 per anchor; enough for every open height of a busy chain).
MEMORY = 4096


class EarlyRelay:
    """Decides, once per block, whether gossip may relay it before it is imported."""

    def __init__(self, solutions: SolutionBook) -> None:
        self._solutions = solutions
        self._lock = threading.Lock()
        self._relayed: OrderedDict[bytes, set[bytes]] = OrderedDict()

    def admit(self, block: BlockAPI) -> bool:
        """True when `block` (its header seal already checked) may be relayed now."""
        sealed = pole_seal(block)
        if sealed is None:
            return False
        release = self._solutions.release_for_prefix(sealed.seal.release_digest_prefix)
        if release is None or sealed.commitment not in release.admitted:
            return False
        with self._lock:
            blocks = self._relayed.setdefault(sealed.commitment, set())
            self._relayed.move_to_end(sealed.commitment)
            if block.hash not in blocks:
                if len(blocks) >= MAX_PER_COMMITMENT:
                    return False
                blocks.add(block.hash)
            while len(self._relayed) > MEMORY:
                self._relayed.popitem(last=False)
        return True

    def relayed(self, block: BlockAPI) -> bool:
        """Whether gossip relayed `block` before it was imported (it needs no publishing)."""
        sealed = pole_seal(block)
        if sealed is None:
            return False
        with self._lock:
            return block.hash in self._relayed.get(sealed.commitment, ())
