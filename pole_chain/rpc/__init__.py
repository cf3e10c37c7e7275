"""The node's JSON-RPC interface: HTTP transport (server), framing (dispatch), handlers
(eth_api, pole_api, dev_api), value conversions (formatting) and filters."""
from pole_chain.rpc.server import RpcContext, RpcServer

__all__ = ["RpcContext", "RpcServer"]
