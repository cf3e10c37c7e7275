"""Property-based tests (hypothesis) of every decoder and validator that takes outside bytes.

Each decoder must refuse bad input with its own error type and nothing else: a foreign
exception (IndexError, TypeError, OverflowError...) from a consensus decoder is a bug that
can split nodes, and from the RPC layer a crash answered as an internal error.
"""
