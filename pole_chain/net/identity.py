"""The node's peer identity: a secp256k1 key kept in `datadir/net/peer.key`.

A peer id is the hash of this key, and peers address each other as
`/ip4/.../tcp/PORT/p2p/PEER_ID`; a node that invented a new key at every start would be a
stranger to its own bootstrap lists and to the peers that scored it. So the key is created
once (atomically: a crash never leaves a half-written key under the final name) and reused.
secp256k1 through coincurve, the curve and library the chain already uses.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from libp2p.crypto.keys import KeyPair
from libp2p.crypto.secp256k1 import create_new_key_pair

PEER_KEY_FOLDER = "net"
PEER_KEY_FILE = "peer.key"


class PeerKeyError(ValueError):
    """The stored peer key is not a 32-byte hex secp256k1 secret."""


def peer_key_path(datadir: Path) -> Path:
    """Where the peer key of the node with this data directory lives."""
    return Path(datadir) / PEER_KEY_FOLDER / PEER_KEY_FILE


def load_or_create_peer_key(datadir: Path | None) -> KeyPair:
    """The key pair stored under `datadir`, created on first use; a fresh one if no datadir.

    The file holds the secret as one line of hex, readable by the owner only.
    """
    if datadir is None:
        return create_new_key_pair()
    path = peer_key_path(datadir)
    if path.exists():
        return _read_key(path)
    key_pair = create_new_key_pair()
    _write_key(path, key_pair.private_key.to_bytes())
    return key_pair


def _read_key(path: Path) -> KeyPair:
    text = path.read_text().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError as error:
        raise PeerKeyError(f"{path} does not hold a hex secret") from error
    if len(secret) != 32:
        raise PeerKeyError(f"{path} holds {len(secret)} bytes, a secp256k1 secret has 32")
    return create_new_key_pair(secret)


def _write_key(path: Path, secret: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".peer.key.")
    try:
        os.fchmod(handle, 0o600)
        os.write(handle, secret.hex().encode() + b"\n")
        os.fsync(handle)
    finally:
        os.close(handle)
    os.replace(temporary, path)
