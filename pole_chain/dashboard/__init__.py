"""The node's web dashboard: data-node, miner and chain views (docs/DASHBOARD.md).

`pole node` mounts it on its JSON-RPC port (`mount_dashboard(server, ...)`); the RPC layer
knows nothing of it. Static files (static/) are plain HTML, CSS and JavaScript modules.
"""
from pole_chain.dashboard.app import PREFIX, Dashboard, mount_dashboard

__all__ = ["PREFIX", "Dashboard", "mount_dashboard"]
