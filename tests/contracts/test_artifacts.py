"""The committed artifacts are exactly what the committed sources compile to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import TASK_REGISTRY, UnknownArtifact, load_artifact
from contracts.build import artifact_path, compile_contract, render_artifact, sources

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_source_has_an_artifact():
    assert [artifact_path(s).name for s in sources()] == ["TaskRegistry.json"]


@pytest.mark.parametrize("source", sources(), ids=lambda p: p.name)
def test_committed_artifact_equals_a_fresh_compile(source):
    fresh = compile_contract(source)
    committed = artifact_path(source).read_text(encoding="utf-8")
    assert json.loads(committed) == fresh
    assert committed == render_artifact(fresh)  # byte for byte, not only the same JSON


def test_build_check_passes():
    result = subprocess.run(
        [sys.executable, "-m", "contracts.build", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_load_artifact_matches_the_json():
    artifact = load_artifact(TASK_REGISTRY)
    data = json.loads(artifact_path(sources()[0]).read_text(encoding="utf-8"))
    assert artifact.name == TASK_REGISTRY
    assert artifact.abi == data["abi"]
    assert artifact.runtime_bytecode.hex() == data["runtime_bytecode"].removeprefix("0x")
    assert artifact.bytecode.hex() == data["bytecode"].removeprefix("0x")
    # creation code of a contract without a constructor just returns the runtime code
    assert artifact.runtime_bytecode in artifact.bytecode
    assert load_artifact(TASK_REGISTRY) is artifact  # cached


@pytest.mark.parametrize("name", ["NoSuchContract", "../artifacts/TaskRegistry"])
def test_load_artifact_rejects_unknown_names(name):
    with pytest.raises(UnknownArtifact, match="TaskRegistry"):
        load_artifact(name)
