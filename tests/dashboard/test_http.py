"""The dashboard on the node's RPC port, over plain HTTP: routes, files, JSON-RPC untouched,
and what a node that is not a dev node refuses (it holds no key: the page shows a command)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from pole_chain.devnet.node_process import NodeProcess


def get(url: str, accept: str = "text/html,*/*") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post(url: str, payload: object) -> tuple[int, object]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def full_node(tmp_path_factory):
    """A node that is not a dev node (no --mine-idle: nothing needs to be mined here)."""
    process = NodeProcess(tmp_path_factory.mktemp("full"), dev=False).start()
    yield process
    process.stop()


def test_the_page_and_its_files_are_served_on_the_rpc_port(devnode):
    status, headers, _ = get(devnode.url + "/")
    assert status == 302 and headers["Location"] == "/dashboard/"
    status, headers, body = get(devnode.url + "/dashboard/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script type="module" src="static/main.js">' in body
    for name, kind in (("main.js", "text/javascript"), ("style.css", "text/css"), ("plots.js", "text/javascript")):
        status, headers, _ = get(f"{devnode.url}/dashboard/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind), name
    # only the files the package ships: no path reaches the disk
    for path in ("static/../app.py", "static/..%2F__init__.py", "static/nope.js", "api/nope"):
        assert get(f"{devnode.url}/dashboard/{path}")[0] == 404, path


def test_json_rpc_is_unchanged_beside_the_dashboard(devnode):
    status, answer = post(devnode.url, {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    assert status == 200 and answer["result"] == "0x504f4c45"
    for path, accept in (("/some/path", "text/html"), ("/", "application/json")):
        status, _, body = get(devnode.url + path, accept)
        assert status == 405 and b"JSON-RPC needs POST" in body, path


def test_views_read_the_node(devnode):
    status, _, body = get(devnode.url + "/dashboard/api/overview")
    overview = json.loads(body)
    assert status == 200 and overview["dev"] is True and overview["chainId"] == "0x504f4c45"
    assert len(overview["accounts"]) == 10
    assert overview["peers"] == {"networking": False, "list": [], "p2p": None,
                                 "note": overview["peers"]["note"]}
    status, _, body = get(devnode.url + "/dashboard/api/blocks?count=5")
    assert status == 200 and json.loads(body)[-1]["kind"] == "genesis"
    status, _, body = get(devnode.url + "/dashboard/api/miner?address=0x12")
    assert status == 400 and "not a 20-byte hex address" in json.loads(body)["error"]
    status, _, body = get(devnode.url + "/dashboard/api/blocks?count=many")
    assert status == 400 and "count must be an integer" in json.loads(body)["error"]


def test_a_full_node_posts_nothing_and_shows_the_command(full_node, open_page):
    status, answer = post(full_node.url + "/dashboard/api/post-task", {"account": 0, "reward": "1"})
    assert status == 403 and answer["devOnly"] is True and "never holds your key" in answer["error"]
    status, answer = post(full_node.url + "/dashboard/api/release", {"taskId": 1})
    assert status == 403
    status, _, body = get(full_node.url + "/dashboard/api/overview")
    assert json.loads(body)["accounts"] == []  # no key, no dev account, is offered

    page = open_page(full_node.url + "/dashboard/")
    assert page.text_content("#node-mode").startswith("full")
    assert page.is_disabled("#account")
    assert page.text_content("#post-button") == "Show the command"
    page.fill("#reward", "2.5")
    page.click("#post-button")
    command = page.text_content("#post-command")
    assert f"pole task post --rpc {full_node.url}" in " ".join(command.replace("\\\n", " ").split())
    assert "--reward 2.5" in command and "POLE_KEY=<your key>" in command
    assert page.is_hidden("#post-message")
