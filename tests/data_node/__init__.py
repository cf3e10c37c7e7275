"""Data-node tests: posting, release, status, model delivery, and one real-process run."""
from __future__ import annotations

from eth_utils import encode_hex

from miner.bonds import is_bonded
from miner.pole_module import pole_web3
from pole_chain.demo.demo import Children, pole_command
from pole_chain.devnet.probes import wait_until


def start_bonded_miners(children: Children, url: str, accounts: list, timeout_s: float) -> list:
    """`pole mine --once` for each account (seed = its index) against `url`, returned once
    every one of them has bonded (each bonds on start)."""
    miners = [
        children.start(
            f"miner{i}",
            pole_command("mine", "--rpc", url, "--key", encode_hex(a.key), "--seed", str(i),
                         "--once", "--no-progress", "--poll", "0.3"),
        )
        for i, a in enumerate(accounts)
    ]
    w3 = pole_web3(url)
    wait_until(lambda: all(is_bonded(w3, a.address) for a in accounts), timeout=timeout_s,
               what="the miners bonded on start")
    return miners
