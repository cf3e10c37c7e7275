"""examples/post_task.py and examples/watch_task.py, run against a real `pole node --dev`.

The scripts name their node's URL in RPC_URL; the test points it at the module's dev node,
runs each script's main() in a temporary directory and reads what it printed.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import dev_call
from vm_hooks.task import TaskStatus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, url: str, monkeypatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RPC_URL", url)
    return module


@pytest.fixture
def w3(snapshot_w3):
    return snapshot_w3


def test_post_then_watch_until_expired(w3, devnode, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    task_id = example("post_task", devnode.url, monkeypatch).main()
    printed = capsys.readouterr().out
    task = w3.pole.get_task(task_id)
    assert printed == (
        f"task {task_id}: open, reward 1 ETH, deadline {task.deadline}\n"
    )
    assert (tmp_path / "data-node" / "tasks" / str(task_id) / "test_set.plds").is_file()

    watch = example("watch_task", devnode.url, monkeypatch)
    assert watch.describe(w3.eth.get_block(0)) == "block #0 (genesis)"
    posted_in = w3.eth.get_block("latest")
    assert watch.describe(posted_in) == f"block #{posted_in['number']} (dev, score 1)"
    # Nobody mines it: past its time limit the next block expires it, and the script stops.
    dev_call(w3, "evm_increaseTime", hex(task.time_limit + 1))
    dev_call(w3, "evm_mine")
    assert w3.pole.get_task(task_id).status is TaskStatus.EXPIRED
    watch.main(task_id)
    assert capsys.readouterr().out.endswith(
        f"task {task_id} expired: the reward went back to the poster\n"
    )
