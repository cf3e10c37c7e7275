"""Delivered models for the page: `pole model get` run for a settled task, its files served.

Delivery (pole_chain/clients/model_delivery.py) fetches the winning model by its on-chain
commitment, checks the commitment and the claimed test accuracy, and writes a torch module.
It needs no key, so any node's dashboard offers it. It runs as a `pole model get` child
process, so the node itself never imports torch, one delivery at a time, and its result is
kept: a settled task's model does not change.

    start(task_id)      begin delivering (idempotent); state(task_id) says how it went
    file(task_id, name) the bytes of one delivered file, for the page's download links
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

    def out_dir(self, task_id: int) -> Path:
        return self.root / "models" / str(task_id)

    def state(self, task_id: int) -> Optional[dict[str, Any]]:
        with self._lock:
            state = self._states.get(task_id)
            return None if state is None else dict(state)

    def start(self, task_id: int) -> dict[str, Any]:
        with self._lock:
            state = self._states.get(task_id)
            if state is not None and state["state"] in ("running", "delivered"):
                return dict(state)
            self._states[task_id] = {"state": "running", "taskId": task_id}
        threading.Thread(target=self._deliver, args=(task_id,), daemon=True,
                         name=f"dashboard-delivery-{task_id}").start()
        return {"state": "running", "taskId": task_id}

    def _deliver(self, task_id: int) -> None:
        out = self.out_dir(task_id)
        command = [sys.executable, "-m", "pole_chain", "model", "get", str(task_id),
                   "--rpc", self.rpc_url, "--out", str(out)]
        with self._one_at_a_time:
            try:
                done = subprocess.run(command, capture_output=True, text=True,
                                      env=child_environment(), timeout=DELIVERY_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as error:
                self._set(task_id, {"state": "failed", "taskId": task_id, "error": str(error)})
                return
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            self._set(task_id, {"state": "failed", "taskId": task_id,
                                "error": lines[-1] if lines else f"exit status {done.returncode}"})
            return
        meta = json.loads((out / "meta.json").read_text())
        self._set(task_id, {
            "state": "delivered",
            "taskId": task_id,
            "summary": done.stdout.strip(),
            "meta": meta,
            "files": [name for name in DOWNLOADS if (out / name).is_file()],
        })

    def _set(self, task_id: int, state: dict[str, Any]) -> None:
        with self._lock:
            self._states[task_id] = state

    def file(self, task_id: int, name: str) -> Optional[bytes]:
        if name not in DOWNLOADS:
            return None
        state = self.state(task_id)
        if state is None or state["state"] != "delivered":
            return None
        path = self.out_dir(task_id) / name
        return path.read_bytes() if path.is_file() else None
