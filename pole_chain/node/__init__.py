"""The node: one chain database, its services, and the facade the RPC layer calls."""
