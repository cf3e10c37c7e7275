"""The dashboard as an HTTP app mounted on the node's RPC port (`RpcServer.mount`).

    GET  /dashboard/                      the page (static/index.html)
    GET  /dashboard/static/NAME           its CSS and JS modules (package data, no build step)
    GET  /dashboard/api/overview          node, head, clock, peers, dev accounts   (views.py)
    GET  /dashboard/api/blocks?count=N    the latest blocks
    GET  /dashboard/api/tasks             every task, with what this data node holds of it
    GET  /dashboard/api/miner?address=A   one miner through each task
    GET  /dashboard/api/log               this data node's action log
    GET  /dashboard/api/spec-template?dataset=D&model=M   a model spec to start a custom one from
    GET  /dashboard/api/model/ID          how the delivery of task ID's model went
    GET  /dashboard/api/model/ID/FILE     a delivered file (model.safetensors, model.pt, ...)
    POST /dashboard/api/post-task         dev nodes only: post the form's task  (posting.py)
    POST /dashboard/api/release           dev nodes only: release a task now
    POST /dashboard/api/deliver           fetch and check task ID's model   (delivery.py)

Reads go through `ChainViews`, a JSON-RPC client of this same node, so the page shows what
any client of the node could see. Answers are JSON: the view, or {"error": message}.
"""
from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from eth_utils import encode_hex
from web3.exceptions import Web3RPCError

from miner.pole_module import error_message
from pole_chain.dashboard.delivery import DOWNLOADS, ModelDeliveries
from pole_chain.dashboard.posting import DevDataNode, FormError, parse_form
from pole_chain.dashboard.views import ChainViews, ViewError
from pole_chain.rpc.server import HttpReply

log = logging.getLogger("pole.dashboard")

PREFIX = "/dashboard"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
NO_STORE = (("Cache-Control", "no-store"),)
DEV_ONLY = (
    "posting from the page needs a dev node (`pole node --dev`): a node never holds your key. "
    "Run the command shown instead, with your own key"
)


def _json(status: int, obj: Any) -> HttpReply:
    return HttpReply(status, json.dumps(obj).encode(), "application/json", NO_STORE)


def _error(status: int, message: str, **extra: Any) -> HttpReply:
    return _json(status, {"error": message, **extra})


def static_files() -> dict[str, bytes]:
    """The page's files by name (read once: they are package data and do not change)."""
    folder = resources.files("pole_chain.dashboard") / "static"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and Path(entry.name).suffix in STATIC_TYPES
    }


class Dashboard:
    """The page and its JSON endpoints for the node at `rpc_url` (this node's own URL)."""

    def __init__(self, rpc_url: str, *, dev: bool, workdir: Path) -> None:
        self.rpc_url = rpc_url
        self.dev = dev
        self.workdir = Path(workdir)
        self.views = ChainViews(rpc_url)
        self.data_node: Optional[DevDataNode] = DevDataNode(rpc_url, self.workdir) if dev else None
        self.deliveries = ModelDeliveries(rpc_url, self.workdir)
        self.files = static_files()
        self._get: dict[str, Callable[[dict[str, list[str]]], HttpReply]] = {
            "overview": lambda q: _json(200, self.views.overview()),
            "blocks": self._blocks,
            "tasks": lambda q: _json(200, self._tasks()),
            "miner": self._miner,
            "log": lambda q: _json(200, self.data_node.log if self.data_node else []),
            "spec-template": self._spec_template,
        }
        self._post: dict[str, Callable[[Any], HttpReply]] = {
            "post-task": self._post_task,
            "release": self._release,
            "deliver": self._deliver,
        }

    # ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes) -> HttpReply:
        url = urlsplit(path)
        route = url.path[len(PREFIX):].strip("/")
        try:
            if method == "GET":
                return self._handle_get(route, parse_qs(url.query))
            if method == "POST" and route.startswith("api/"):
                handler = self._post.get(route[len("api/"):])
                if handler is None:
                    return _error(404, f"no such dashboard action: {route}")
                try:
                    obj = json.loads(body or b"{}")
                except ValueError:
                    return _error(400, "the request body is not JSON")
                return handler(obj)
            return _error(405, f"{method} is not served under {PREFIX}")
        except (FormError, ViewError) as error:
            return _error(400, str(error))
        except Web3RPCError as error:
            return _error(502, f"the node refused: {error_message(error)}")
        except OSError as error:  # the node's own RPC is not answering (shutting down?)
            return _error(503, f"the node's JSON-RPC did not answer: {error}")

    def _handle_get(self, route: str, query: dict[str, list[str]]) -> HttpReply:
        if route in ("", "index.html"):
            return HttpReply(200, self.files["index.html"], STATIC_TYPES[".html"], NO_STORE)
        if route.startswith("static/"):
            name = route[len("static/"):]
            data = self.files.get(name)  # only files the package ships: no path is opened
            if data is None:
                return _error(404, f"no such file: {name}")
            return HttpReply(200, data, STATIC_TYPES[Path(name).suffix], (("Cache-Control", "no-cache"),))
        if route.startswith("api/model/"):
            return self._model(route[len("api/model/"):].split("/"))
        if route.startswith("api/"):
            handler = self._get.get(route[len("api/"):])
            if handler is not None:
                return handler(query)
        return _error(404, f"no such page: {route}")

    # ----------------------------------------------------------------------------------
    # reads

    def _blocks(self, query: dict[str, list[str]]) -> HttpReply:
        count = _int_param(query, "count", 40)
        return _json(200, self.views.blocks(max(1, min(count, 256))))

    def _miner(self, query: dict[str, list[str]]) -> HttpReply:
        address = (query.get("address") or [""])[0]
        return _json(200, self.views.miner(address))

    def _tasks(self) -> dict[str, Any]:
        tasks = self.views.tasks()
        held = set(self.data_node.posted_here()) if self.data_node else set()
        for task in tasks:
            task["postedHere"] = task["id"] in held
            task["autoRelease"] = self.data_node.auto_state(task["id"]) if self.data_node else None
            task["delivery"] = self._delivery_of(task)
        return {"dev": self.dev, "workdir": str(self.workdir), "tasks": tasks}

    def _delivery_of(self, task: dict[str, Any]) -> Optional[dict[str, Any]]:
        """The delivery of the task's current winner; None while there is none (the page then
        asks for one), also when the one held is of a winner a better sibling replaced."""
        delivery = self.deliveries.state(task["id"])
        result = task["result"]
        if delivery is None or result is None or delivery["commitment"] != result["modelCommitment"]:
            return None
        return delivery

    def _spec_template(self, query: dict[str, list[str]]) -> HttpReply:
        from miner.datasets import BUILTIN_DATASETS, load_builtin
        from miner.model_spec import PREDEFINED_MODELS, ModelSpecError, build_spec, model_spec_to_obj

        dataset = (query.get("dataset") or ["digits"])[0]
        model = (query.get("model") or ["mlp"])[0]
        if dataset not in BUILTIN_DATASETS or model not in PREDEFINED_MODELS:
            return _error(400, f"a template needs a built-in dataset ({', '.join(BUILTIN_DATASETS)}) "
                               f"and a predefined model ({', '.join(PREDEFINED_MODELS)})")
        data = load_builtin(dataset)
        try:
            spec = build_spec(model, data.d, data.num_classes, data.image_shape)
        except ModelSpecError as error:
            return _error(400, f"{model} does not fit {dataset}: {error}")
        return _json(200, {"spec": model_spec_to_obj(spec)})

    def _model(self, parts: list[str]) -> HttpReply:
        if not parts or not parts[0].isdigit():
            return _error(404, "no such model")
        task_id = int(parts[0])
        if len(parts) == 1:
            return _json(200, self.deliveries.state(task_id) or {"state": "none", "taskId": task_id})
        name = parts[1]
        data = self.deliveries.file(task_id, name)
        if data is None:
            return _error(404, f"task {task_id}'s {name} is not delivered")
        disposition = f'attachment; filename="{name}"'
        return HttpReply(200, data, DOWNLOADS[name], NO_STORE + (("Content-Disposition", disposition),))

    # ----------------------------------------------------------------------------------
    # actions

    def _post_task(self, obj: Any) -> HttpReply:
        if self.data_node is None:
            return _error(403, DEV_ONLY, devOnly=True)
        form = parse_form(obj, self.workdir)
        return _json(200, self.data_node.post(form))

    def _release(self, obj: Any) -> HttpReply:
        if self.data_node is None:
            return _error(403, DEV_ONLY, devOnly=True)
        return _json(200, self.data_node.release(_task_id(obj)))

    def _deliver(self, obj: Any) -> HttpReply:
        task_id = _task_id(obj)
        task = self.views.w3.pole.get_task(task_id)
        if task is None or task.result is None:
            raise FormError(f"task {task_id} is not settled: it has no model to deliver yet")
        return _json(200, self.deliveries.start(task_id, encode_hex(task.result.model_commitment)))


def _task_id(obj: Any) -> int:
    value = obj.get("taskId") if isinstance(obj, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise FormError(f"taskId must be a task id (a positive integer), got {value!r}")
    return value


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise ViewError(f"{name} must be an integer, got {values[0][:20]!r}") from None


def mount_dashboard(server: Any, *, dev: bool, workdir: Path) -> Dashboard:
    """Serve the dashboard from `server` (an RpcServer) under /dashboard."""
    dashboard = Dashboard(server.url, dev=dev, workdir=workdir)
    server.mount(PREFIX, dashboard)
    return dashboard
