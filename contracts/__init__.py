"""On-chain contracts of PoLe chain: Vyper sources and their compiled artifacts.

`load_artifact(name)` reads `contracts/artifacts/<name>.json`, written by
`python -m contracts.build`. Artifacts are read as package resources, so this works from an
installed wheel as well as from a checkout, and never needs the Vyper compiler.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from eth_utils import to_bytes

TASK_REGISTRY = "TaskRegistry"

__all__ = ["TASK_REGISTRY", "Artifact", "UnknownArtifact", "available_artifacts", "load_artifact"]


class UnknownArtifact(LookupError):
    """No compiled artifact with the requested name."""


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: its ABI and its creation and runtime bytecode."""

    name: str
    abi: list
    bytecode: bytes
    runtime_bytecode: bytes


def _artifacts_dir() -> resources.abc.Traversable:
    return resources.files(__name__) / "artifacts"


def available_artifacts() -> list[str]:
    """Names of all compiled artifacts shipped with the package."""
    return sorted(
        entry.name.removesuffix(".json")
        for entry in _artifacts_dir().iterdir()
        if entry.name.endswith(".json")
    )


@functools.cache
def load_artifact(name: str) -> Artifact:
    """Load a compiled contract by name, for example `load_artifact(TASK_REGISTRY)`."""
    resource = _artifacts_dir() / f"{name}.json"
    if not name.isidentifier() or not resource.is_file():
        raise UnknownArtifact(
            f"no contract artifact named {name!r}; available: {', '.join(available_artifacts())}"
            " (run `python -m contracts.build` after adding a contract)"
        )
    data = json.loads(resource.read_text(encoding="utf-8"))
    return Artifact(
        name=name,
        abi=data["abi"],
        bytecode=to_bytes(hexstr=data["bytecode"]),
        runtime_bytecode=to_bytes(hexstr=data["runtime_bytecode"]),
    )
