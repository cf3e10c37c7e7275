"""Delivered models for the page: `pole model get` run for a settled task, its files served.

Delivery (pole_chain/clients/model_delivery.py) fetches the winning model by its on-chain
commitment, checks the commitment and the claimed test accuracy, and writes a torch module.
It needs no key, so any node's dashboard offers it. It runs as a `pole model get` child
process, so the node itself never imports torch, one delivery at a time, and its result is
kept for the winning model it delivered, named by its commitment. A task's winner can still
change after it settles: a better sibling of the settling block, revealed within the reveal
window, takes the head ("best, not first", docs/PROTOCOL.md). So a delivery is of one
commitment, and a request for another starts afresh.

    start(task_id, commitment)  begin delivering that winner (idempotent per commitment)
    state(task_id)              how the latest delivery went, with the commitment it is of
    file(task_id, name)         the bytes of one delivered file, for the page's download links
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

from pole_chain.devnet.node_process import child_environment

#: The files a delivery writes that the page offers for download (model_delivery.py).
DOWNLOADS = {
    "model.safetensors": "application/octet-stream",
    "model.pt": "application/octet-stream",
    "model.plmd": "application/octet-stream",
    "meta.json": "application/json",
}
DELIVERY_TIMEOUT_S = 300


class ModelDeliveries:
    def __init__(self, rpc_url: str, root: Path) -> None:
        self.rpc_url = rpc_url
        self.root = Path(root)
        self._states: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._one_at_a_time = threading.Lock()

    def out_dir(self, task_id: int, commitment: str) -> Path:
        return self.root / "models" / str(task_id) / commitment.removeprefix("0x")

    def state(self, task_id: int) -> Optional[dict[str, Any]]:
        with self._lock:
            state = self._states.get(task_id)
            return None if state is None else dict(state)

    def start(self, task_id: int, commitment: str) -> dict[str, Any]:
        """Deliver the model of `commitment`, the task's winner as the chain says now."""
        with self._lock:
            state = self._states.get(task_id)
            if state is not None and state["commitment"] == commitment and state["state"] in ("running", "delivered"):
                return dict(state)
            state = {"state": "running", "taskId": task_id, "commitment": commitment}
            self._states[task_id] = state
        threading.Thread(target=self._deliver, args=(task_id, commitment), daemon=True,
                         name=f"dashboard-delivery-{task_id}").start()
        return dict(state)

    def _deliver(self, task_id: int, commitment: str) -> None:
        out = self.out_dir(task_id, commitment)
        command = [sys.executable, "-m", "pole_chain", "model", "get", str(task_id),
                   "--rpc", self.rpc_url, "--out", str(out)]
        failed = {"state": "failed", "taskId": task_id, "commitment": commitment}
        with self._one_at_a_time:
            try:
                done = subprocess.run(command, capture_output=True, text=True,
                                      env=child_environment(), timeout=DELIVERY_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as error:
                self._set(task_id, commitment, dict(failed, error=str(error)))
                return
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            self._set(task_id, commitment, dict(failed, error=lines[-1] if lines else f"exit status {done.returncode}"))
            return
        meta = json.loads((out / "meta.json").read_text())
        if meta["model_commitment"] != commitment:  # `pole model get` fetched the winner of its time
            self._set(task_id, commitment, dict(failed, error="the task's winner changed while its model was fetched"))
            return
        self._set(task_id, commitment, {
            "state": "delivered",
            "taskId": task_id,
            "commitment": commitment,
            "summary": done.stdout.strip(),
            "meta": meta,
            "files": [name for name in DOWNLOADS if (out / name).is_file()],
        })

    def _set(self, task_id: int, started_for: str, state: dict[str, Any]) -> None:
        """Record a finished delivery, unless a delivery of another winner was asked for
        since (its result is the one that counts)."""
        with self._lock:
            if self._states[task_id]["commitment"] == started_for:
                self._states[task_id] = state

    def file(self, task_id: int, name: str) -> Optional[bytes]:
        if name not in DOWNLOADS:
            return None
        state = self.state(task_id)
        if state is None or state["state"] != "delivered":
            return None
        path = self.out_dir(task_id, state["commitment"]) / name
        return path.read_bytes() if path.is_file() else None
