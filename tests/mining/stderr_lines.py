"""Lines a `pole mine` process writes to stderr, waited for one fragment at a time."""
from __future__ import annotations

import queue
import threading
import time
from typing import IO


class StderrLines:
    """Pumps a child's stderr into a queue on a thread; `wait_line` blocks on the queue (no
    sleeps) until a line holds the fragment, and keeps every line read in `seen`."""

    def __init__(self, stream: IO[str], wait_s: float) -> None:
        self.seen: list[str] = []
        self._wait_s = wait_s
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def wait_line(self, fragment: str) -> str:
        deadline = time.monotonic() + self._wait_s
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"no {fragment!r} line; miner said:\n{''.join(self.seen)}")
