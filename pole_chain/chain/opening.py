"""Build the configured chain class and open (or create) a chain on a database."""
from __future__ import annotations

from typing import Optional

from eth.abc import AtomicDatabaseAPI
from eth.db.chain import ChainDB
from eth.exceptions import CanonicalHeadNotFound
from eth_typing import BlockNumber

from vm_hooks.chain import PoLeChain
from vm_hooks.chain_config import chain_class
from vm_hooks.consensus import SealVerifier
from vm_hooks.idle_pow import IdleParams

from vm_hooks.genesis import genesis_params, genesis_state


class WrongGenesisError(Exception):
    """The database holds another chain (for example a dev chain opened without --dev)."""


def open_chain(
    db: AtomicDatabaseAPI,
    *,
    dev: bool,
    verifier: Optional[SealVerifier] = None,
    idle: IdleParams = IdleParams(),
) -> PoLeChain:
    """The chain stored in ``db``, creating its genesis when the database is empty."""
    cls = chain_class(dev=dev, verifier=verifier, idle=idle)
    try:
        ChainDB(db).get_canonical_head()
    except CanonicalHeadNotFound:
        return cls.from_genesis(db, genesis_params(dev=dev), genesis_state())
    stored_genesis = ChainDB(db).get_canonical_block_header_by_number(BlockNumber(0))
    expected_extra = genesis_params(dev=dev)["extra_data"]
    if stored_genesis.extra_data != expected_extra:
        raise WrongGenesisError(
            f"database holds a {'non-dev' if dev else 'dev'} chain; open it "
            f"{'without' if dev else 'with'} --dev or use another data directory"
        )
    return cls(db)
