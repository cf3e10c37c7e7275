"""Nodes as child processes on loopback: for the demo, benchmarks and integration tests."""
