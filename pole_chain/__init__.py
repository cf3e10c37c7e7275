"""PoLe chain: a Proof-of-Learning blockchain built as a plug-in to py-evm.

This package holds what a node operator runs: chain configuration and genesis, the on-disk
database, the mempool, the JSON-RPC server and the ``pole`` command line.
"""
