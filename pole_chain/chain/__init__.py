"""The chain as one node stores it: its database, opening it, and producing blocks on it."""
