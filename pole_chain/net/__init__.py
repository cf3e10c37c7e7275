"""PoLe's peer-to-peer layer on py-libp2p: gossip, blob exchange, status and range sync.

The node builds one `Network` from a `NetworkConfig`, a `ChainView` (what peers may read)
and a `NodeSink` (where validated gossip goes), calls `start()`, and publishes what it
admits. docs/NETWORK.md describes the topics, protocols, limits and the threading model.
"""

from pole_chain.net.config import NetworkConfig
from pole_chain.net.envelope import Envelope, EnvelopeError, Kind
from pole_chain.net.host import PeerRefusedError
from pole_chain.net.interfaces import (
    ChainStatus,
    ChainView,
    NodeInfo,
    NodeSink,
    PeerRecord,
    Verdict,
)
from pole_chain.net.network import Network, NetworkError
from pole_chain.net.peer_score import Offence
from pole_chain.net.wire import RefusedError, WireError

__all__ = [
    "ChainStatus",
    "ChainView",
    "Envelope",
    "EnvelopeError",
    "Kind",
    "Network",
    "NetworkConfig",
    "NetworkError",
    "NodeInfo",
    "NodeSink",
    "Offence",
    "PeerRecord",
    "PeerRefusedError",
    "RefusedError",
    "Verdict",
    "WireError",
]
