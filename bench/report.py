"""How every benchmark reports: one JSON object on its last line, the same in bench/results/."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Dict

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def report(name: str, figures: Dict[str, Any]) -> None:
    """Print ``figures`` (plus the machine they were measured on) and write results/NAME.json."""
    line = json.dumps(
        {**figures, "machine": platform.machine(), "cpus": os.cpu_count()}, sort_keys=True
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(line + "\n")
    print(line, flush=True)
