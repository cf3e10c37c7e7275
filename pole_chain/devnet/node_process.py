"""Run a ``pole node`` as a child process: for the demo, benchmarks and integration tests.

It starts the node the way a user does (``python -m pole_chain node ...``), waits for its
"Listening on URL" line and stops it with SIGTERM (a Ctrl-C), so everything that talks to it
goes over real HTTP between real processes.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

from web3 import Web3

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0
_LISTENING = re.compile(r"Listening on (http://\S+)")
_P2P = re.compile(r"P2P on (/\S+)")


def child_environment() -> dict:
    """The environment for child processes: this checkout importable, output unbuffered."""
    path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")


class NodeProcess:
    """One ``pole node`` subprocess on a free port."""

    def __init__(self, datadir: Optional[Path], *args: str, dev: bool = True) -> None:
        self.datadir = datadir
        self.args = list(args)
        self.dev = dev
        self.process: Optional[subprocess.Popen] = None
        self.url = ""
        self.multiaddr = ""  # set when the node joined the network (--listen / --peer)
        self.banner: list[str] = []
        self._stderr = tempfile.TemporaryFile(mode="w+")

    def start(self) -> "NodeProcess":
        command = [sys.executable, "-m", "pole_chain", "node", "--rpc-port", "0"]
        command += ["--log-level", "warning"]
        if self.dev:
            command.append("--dev")
        command += ["--datadir", str(self.datadir)] if self.datadir else ["--ephemeral"]
        command += self.args
        self.process = subprocess.Popen(
            command,
            env=child_environment(),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=STARTUP_TIMEOUT)
            except queue.Empty:
                self.kill()
                raise RuntimeError(f"node did not start in {STARTUP_TIMEOUT}s:\n{self.stderr()}")
            if line is None:
                raise RuntimeError(f"node exited during startup:\n{self.stderr()}")
            self.banner.append(line.rstrip("\n"))
            p2p = _P2P.search(line)
            if p2p:
                self.multiaddr = p2p.group(1)
            match = _LISTENING.search(line)
            if match:
                self.url = match.group(1)
                return self

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as a user's Ctrl-C would; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=20)

    def web3(self) -> Web3:
        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 60}))

    def __enter__(self) -> "NodeProcess":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.kill()
