"""`pole demo --encrypted` reaches post_task (the full demo, ~100 s on a 4-node devnet, is not
run here: an encrypted task end to end is tests/encrypted/test_end_to_end.py)."""
from __future__ import annotations

import inspect

import pytest

from pole_chain.cli.main import build_parser
from pole_chain.clients.data_node import post_task
from pole_chain.demo.demo import demo_config, demo_summary_line, task_parameters


@pytest.mark.parametrize("argv, encrypted", [(["demo"], False), (["demo", "--encrypted"], True)])
def test_the_flag_reaches_post_task(tmp_path, argv, encrypted):
    config = demo_config(build_parser("demo").parse_args(argv))
    assert config.encrypted is encrypted
    parameters = task_parameters(config, tmp_path)
    assert parameters["encrypt"] is encrypted
    assert parameters["dataset"] == "digits" and parameters["model"] == "mlp"  # the rest unchanged
    inspect.signature(post_task).bind("w3", "poster", **parameters)  # post_task takes them all


def test_the_summary_says_the_task_was_encrypted():
    assert demo_summary_line({"seconds": 99.6, "encrypted": False}) == "Demo finished in 100 s."
    line = demo_summary_line({"seconds": 99.6, "encrypted": True})
    assert line.startswith("Demo finished in 100 s; the task's training data was encrypted (IPFE)")
