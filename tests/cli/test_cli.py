"""The `pole` command line as a new user meets it: real processes, one-line errors."""
from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from pole_chain.devnet.node_process import NodeProcess, child_environment
from vm_hooks.genesis import dev_accounts


def pole(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pole_chain", *args],
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_version_prints_the_installed_version():
    result = pole("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"pole {metadata.version('pole-chain')}"


def test_accounts_lists_every_dev_account_with_its_key():
    result = pole("accounts")
    assert result.returncode == 0
    for index, account in enumerate(dev_accounts()):
        line = f"({index}) {account.address}  key 0x{bytes(account.key).hex()}"
        assert line in result.stdout
    assert "test test test" in result.stdout and "devnets only" in result.stdout


def test_a_malformed_coinbase_is_a_one_line_usage_error():
    result = pole("node", "--ephemeral", "--coinbase", "0x1234")
    assert result.returncode == 2
    assert "argument --coinbase: not a 20-byte hex address: '0x1234'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_datadir_held_by_another_node_is_refused_in_one_line(tmp_path):
    first = NodeProcess(tmp_path, dev=True).start()
    try:
        result = pole("node", "--dev", "--rpc-port", "0", "--datadir", str(tmp_path))
    finally:
        first.stop()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"pole node: cannot open the chain in {tmp_path}: {tmp_path} is in use by another "
        "node (its database lock is held); stop that node or choose another --datadir"
    )
    assert "Traceback" not in result.stderr


def test_the_banner_gives_the_chain_id_in_hex_and_says_who_is_funded(tmp_path):
    full = NodeProcess(None, dev=False).start()
    try:
        banner = "\n".join(full.banner)
    finally:
        full.stop()
    assert "chain id 0x504f4c45" in banner
    assert "Genesis funds the 10 test-mnemonic accounts (`pole accounts` lists them)." in banner
