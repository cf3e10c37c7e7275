"""Encrypted tasks: the protocol, the node's key RPC, and whole tasks with real processes."""
from __future__ import annotations

import rlp

from miner.encrypted_tasks import KEY_BUNDLE_TYPE, KeyBundle


def bundle_bytes(bundle: KeyBundle, **changes) -> bytes:
    """The bundle's encoding with some fields replaced (its signature kept): what a hostile
    peer or a buggy data node could send, bypassing the constructor's checks."""
    fields = dict(bundle.as_dict(), **changes)
    items = [fields[name] for name, _ in KeyBundle._meta.fields]
    items[5] = list(items[5])  # input_shape, an RLP list
    return bytes([KEY_BUNDLE_TYPE]) + rlp.encode(items)
