"""The PoLe VM for contract test suites: an eth-tester backend and a pytest plugin."""
