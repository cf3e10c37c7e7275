"""admin_* methods: the operator's view of the node's peers, in geth's shapes.

geth's admin_nodeInfo, admin_peers, admin_addPeer and admin_removePeer, with libp2p
multiaddrs (`/ip4/127.0.0.1/tcp/PORT/p2p/PEER_ID`) where geth has enode URLs; plus two PoLe
additions for partition tests, admin_refusePeer and admin_allowPeer (a refused peer is
disconnected and neither dialled nor accepted until allowed again). A node started without
networking answers these with an error saying so. docs/RPC.md lists the fields.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pole_chain.net import ChainStatus, Network, NetworkError, PeerRefusedError
from pole_chain.rpc import formatting as fmt
from pole_chain.rpc.dispatch import INVALID_PARAMS, SERVER_ERROR, InvalidParam, MethodTable, Param, RpcError

if TYPE_CHECKING:
    from pole_chain.rpc.server import RpcContext

METHODS = MethodTable()


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidParam(f"expected a multiaddr or peer id string, got {value!r}")
    return value


def _network(ctx: RpcContext) -> Network:
    service = ctx.node.network
    if service is None:
        raise RpcError(SERVER_ERROR, "networking is off (start the node with --listen or --peer)")
    return service.network


def _peer_id(text: str) -> str:
    """A bare peer id, or the one a full multiaddr ends with (/p2p/ID)."""
    if "/p2p/" in text:
        return text.rsplit("/p2p/", 1)[1]
    if text.startswith("/"):
        raise RpcError(INVALID_PARAMS, f"multiaddr {text} names no peer (/p2p/ID)")
    return text


def _status(status: ChainStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    return {
        "genesis": fmt.hex_data(status.genesis_hash),
        "head": fmt.hex_data(status.head_hash),
        "number": fmt.hex_int(status.head_number),
        "difficulty": fmt.hex_int(status.total_score),  # geth's name for the total score
    }


@METHODS.method("admin_nodeInfo")
def admin_node_info(ctx: RpcContext) -> dict[str, Any]:
    """This node's peer id, dialable multiaddrs, protocols and head."""
    info = _network(ctx).node_info()
    return {
        "id": info.peer_id,
        "name": f"pole/{ctx.node.chain_id:#x}",
        "enode": info.addrs[0] if info.addrs else None,
        "addrs": list(info.addrs),
        "listenAddr": info.addrs[0].split("/p2p/")[0] if info.addrs else None,
        "protocols": {"pole": {**(_status(info.status) or {}), "network": ctx.node.chain_id,
                               "streams": list(info.protocols)}},
    }


@METHODS.method("admin_peers")
def admin_peers(ctx: RpcContext) -> list[dict[str, Any]]:
    """Connected peers: id, addresses, direction, penalty points and last status."""
    network = _network(ctx)
    refused = network.refused_peers()
    return [
        {
            "id": peer.peer_id,
            "name": "",
            "network": {
                "remoteAddress": peer.addrs[0] if peer.addrs else None,
                "inbound": peer.direction == "inbound",
                "refused": peer.peer_id in refused,
            },
            "penalty": peer.penalty,
            "protocols": {"pole": _status(peer.status)},
        }
        for peer in network.peers()
    ]


@METHODS.method("admin_addPeer", Param("url", _text))
def admin_add_peer(ctx: RpcContext, url: str) -> bool:
    """Dial a full multiaddr and keep it as a static peer (redialled while disconnected)."""
    try:
        _network(ctx).add_peer(url)
    except PeerRefusedError as exc:
        raise RpcError(SERVER_ERROR, str(exc)) from exc
    except NetworkError as exc:
        raise RpcError(SERVER_ERROR, f"cannot dial {url}: {exc}") from exc
    except Exception as exc:  # a bad multiaddr or a failed dial, in libp2p's many types
        raise RpcError(SERVER_ERROR, f"cannot dial {url}: {type(exc).__name__}: {exc}") from exc
    return True


@METHODS.method("admin_removePeer", Param("peer", _text))
def admin_remove_peer(ctx: RpcContext, peer: str) -> bool:
    """Forget a static peer and disconnect it; true if it was connected."""
    return _call(ctx, lambda network, peer_id: network.remove_peer(peer_id), peer)


@METHODS.method("admin_refusePeer", Param("peer", _text))
def admin_refuse_peer(ctx: RpcContext, peer: str) -> bool:
    """PoLe addition: disconnect a peer and refuse it both ways until admin_allowPeer."""
    _call(ctx, lambda network, peer_id: network.refuse_peer(peer_id), peer)
    return True


@METHODS.method("admin_allowPeer", Param("peer", _text))
def admin_allow_peer(ctx: RpcContext, peer: str) -> bool:
    """PoLe addition: lift admin_refusePeer (a static peer is redialled)."""
    _call(ctx, lambda network, peer_id: network.allow_peer(peer_id), peer)
    return True


def _call(ctx: RpcContext, action: Any, peer: str) -> Any:
    network = _network(ctx)
    peer_id = _peer_id(peer)
    try:
        return action(network, peer_id)
    except NetworkError as exc:
        raise RpcError(SERVER_ERROR, str(exc)) from exc
    except ValueError as exc:  # not a base58 peer id
        raise RpcError(INVALID_PARAMS, f"not a peer id: {peer_id}") from exc
