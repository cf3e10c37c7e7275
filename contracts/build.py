"""Compile the Vyper contracts in this package into JSON artifacts.

    python -m contracts.build           write contracts/artifacts/<Name>.json for every *.vy
    python -m contracts.build --check   exit 1 if any artifact differs from a fresh compile

Artifacts are byte-reproducible (sorted keys, fixed indentation, trailing newline, no
paths or timestamps), so `--check` can compare bytes and CI can catch a source edited
without rebuilding, or a build from another compiler version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import vyper

CONTRACTS_DIR = Path(__file__).resolve().parent
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"


def artifact_name(path: Path) -> str:
    """CamelCase artifact name of a source file: task_registry.vy -> TaskRegistry."""
    return "".join(part.capitalize() for part in path.stem.split("_"))


def compile_contract(path: Path | str) -> dict:
    """Compile one Vyper source and return its artifact as a dict (hex strings 0x-prefixed)."""
    path = Path(path)
    source = path.read_text(encoding="utf-8")
    # Only the file name is passed as the contract path, so the output does not depend on
    # where the repository is checked out.
    output = vyper.compile_code(
        source,
        contract_path=path.name,
        output_formats=["abi", "bytecode", "bytecode_runtime"],
    )
    return {
        "abi": output["abi"],
        "bytecode": output["bytecode"],
        "runtime_bytecode": output["bytecode_runtime"],
        "source_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "vyper_version": vyper.__version__,
    }


def render_artifact(artifact: dict) -> str:
    """The exact text written to an artifact file."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def sources() -> list[Path]:
    return sorted(CONTRACTS_DIR.glob("*.vy"))


def artifact_path(source: Path) -> Path:
    return ARTIFACTS_DIR / f"{artifact_name(source)}.json"


def build() -> list[Path]:
    """Write every artifact; returns the paths written."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    written = []
    for source in sources():
        target = artifact_path(source)
        target.write_text(render_artifact(compile_contract(source)), encoding="utf-8")
        written.append(target)
    return written


def stale_artifacts() -> list[str]:
    """Describe every artifact that is missing or differs from a fresh compile."""
    problems = []
    for source in sources():
        target = artifact_path(source)
        fresh = render_artifact(compile_contract(source))
        if not target.exists():
            problems.append(f"{target.name}: missing (source {source.name})")
        elif target.read_text(encoding="utf-8") != fresh:
            problems.append(f"{target.name}: differs from a fresh compile of {source.name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contracts.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="verify artifacts instead of writing them"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_artifacts()
        if problems:
            for problem in problems:
                print(f"stale artifact: {problem}", file=sys.stderr)
            print("run `python -m contracts.build` and commit the result", file=sys.stderr)
            return 1
        print(f"all {len(sources())} artifact(s) match vyper {vyper.__version__}")
        return 0
    for target in build():
        print(f"wrote {target.relative_to(CONTRACTS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
