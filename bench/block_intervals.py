"""Block intervals: PoLe blocks of queued tasks against proof-of-work idle blocks.

`python -m bench.block_intervals [--blocks 10]`. The paper's claim: PoLe gives a steadier
block rate than proof of work, because a block comes when training is done, not when a
lottery is won. Two runs of separate `pole node` processes, BLOCKS intervals each:
- run A (PoLe): bench/task_network.py's devnet (4 nodes, 3 miners, the data node posting
  BLOCKS + 1 tasks at once and releasing each in auto mode); the intervals between the
  header timestamps of consecutive canonical PoLe blocks (idle blocks between them, which
  node 0 seals meanwhile, are not counted). `short_releases`: tasks whose release gave up
  waiting for every miner's announcement (after RELEASE_WAIT_S): each such interval holds
  that wait.
- run B (proof of work): one `pole node --mine-idle`, no tasks; the intervals between
  consecutive idle blocks once the retarget has caught up with this machine's hash rate
  (the warm-up from genesis, where blocks come fast and each raises the work, is skipped:
  _IdleChain.steady_stamps).
The idle target interval is a chain parameter (vm_hooks.idle_pow.IdleParams), with no node
option, so run B is not re-run at PoLe's mean: it is scaled to it. The retarget sees a gap
only through gap // target_interval and the nonce search is memoryless, so a chain whose
target were k times longer mines intervals distributed as k times these: `pow_mean_s` is
the measured mean times `pow_scale` (= pole_mean_s), `pow_cv` is unchanged by the scaling
(a coefficient of variation has no unit). `pow_native_mean_s` is what this machine mined.
Header timestamps have 1 s resolution. Writes docs/block_intervals.svg.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from web3 import Web3

from bench.report import report
from bench.task_network import (
    MINERS,
    RELEASE_WAIT_S,
    canonical_pole_blocks,
    data_node,
    post_tasks,
    release_in_turn,
    task_network,
    wait_bonded,
)
from miner.pole_module import pole_web3
from pole_chain.devnet.node_process import NodeProcess
from pole_chain.devnet.probes import wait_until
from vm_hooks.idle_pow import IdleParams
from vm_hooks.seal import read_block_seal

BLOCKS = 20
PLOT = Path(__file__).resolve().parent.parent / "docs" / "block_intervals.svg"
#: Seconds run B may take per idle block (the warm-up included), before it gives up.
IDLE_WAIT_PER_BLOCK_S = 60.0


def pole_intervals(root: Path, blocks: int) -> tuple[list[float], int]:
    """Run A: seconds between consecutive canonical PoLe blocks of `blocks` + 1 tasks; and
    how many of those tasks were released before every miner's announcement arrived."""
    workdir, started = root / "data-node", time.monotonic()
    with task_network(root / "pole") as net:
        wait_bonded(net)
        tasks = post_tasks(net, blocks + 1, workdir)
        print(f"run A: {len(tasks)} tasks queued after {time.monotonic() - started:.0f} s",
              flush=True)
        admitted = release_in_turn(net, tasks, workdir)
        stamps = [int(b["timestamp"]) for b in canonical_pole_blocks(data_node(net))]
    print(f"run A: {len(stamps)} PoLe blocks after {time.monotonic() - started:.0f} s", flush=True)
    return _gaps(stamps), sum(count < MINERS for count in admitted)


def pow_intervals(root: Path, blocks: int) -> list[float]:
    """Run B: seconds between `blocks` + 1 consecutive idle blocks after the warm-up."""
    with NodeProcess(root / "idle", "--mine-idle", dev=False) as node:
        chain = _IdleChain(pole_web3(node.url))
        steady = wait_until(
            lambda: chain.steady_stamps(blocks + 1), pause_s=1.0,
            timeout=IDLE_WAIT_PER_BLOCK_S * (blocks + 40), what=f"{blocks + 1} steady idle blocks",
        )
    print(f"run B: {len(steady)} steady idle blocks", flush=True)
    return _gaps(steady)


class _IdleChain:
    """Work and timestamp of each idle block, each read once over RPC (a poll that re-read
    the chain would take CPU from the node's proof of work)."""

    def __init__(self, w3: Web3) -> None:
        self._w3 = w3
        self._works = [0]  # genesis: no idle work
        self._stamps = [0]

    def steady_stamps(self, count: int) -> list[int] | None:
        """Timestamps of `count` blocks from the end of the warm-up, once it is known.

        The warm-up ends at the first block whose work is at least the hash rate times the
        target interval (from there on the retarget no longer climbs from its genesis work);
        the hash rate is the work per second of the chain's second half, which must lie
        past the warm-up."""
        self._read_new_blocks()
        works, stamps, half = self._works, self._stamps, len(self._works) // 2
        if len(works) - half < 3:
            return None
        rate = sum(works[half:-1]) / max(stamps[-1] - stamps[half], 1)
        target = IdleParams().target_interval
        start = next((n for n in range(1, half + 1) if works[n] >= rate * target), None)
        if start is None or len(works) < start + count:
            return None
        return stamps[start : start + count]

    def _read_new_blocks(self) -> None:
        for number in range(len(self._works), self._w3.eth.block_number + 1):
            block = self._w3.eth.get_block(number)
            self._works.append(read_block_seal(block).idle_work)
            self._stamps.append(int(block["timestamp"]))


def _gaps(stamps: list[int]) -> list[float]:
    return [float(later - earlier) for earlier, later in zip(stamps, stamps[1:])]


def cv(values: list[float]) -> float:
    """Coefficient of variation: population standard deviation over the mean."""
    return statistics.pstdev(values) / statistics.fmean(values)


def svg_plot(pole: list[float], pow_scaled: list[float], path: Path) -> None:
    """Both runs' intervals in block order, PoW scaled to PoLe's mean, with each mean."""
    width, height, pad = 640, 360, 60
    top = max(pole + pow_scaled) * 1.1
    count = max(len(pole), len(pow_scaled))

    def px(index: float, seconds: float) -> tuple[float, float]:
        x = pad + index / max(count - 1, 1) * (width - 2 * pad)
        return round(x, 1), round(height - pad - seconds / top * (height - 2 * pad), 1)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="13">Intervals between '
           'consecutive blocks: PoLe and proof of work at the same mean</text>']
    for tick in _ticks(top):
        _, y = px(0, tick)
        out.append(f'<line x1="{pad}" y1="{y}" x2="{width - pad}" y2="{y}" stroke="#ddd"/>')
        out.append(f'<text x="{pad - 5}" y="{y + 4}" text-anchor="end">{tick:g} s</text>')
    out.append(f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">interval '
               f'(1 .. {count}, in block order)</text>')
    runs = ((pole, "#c0392b", "PoLe", 0), (pow_scaled, "#2980b9", "PoW", 1))
    for series, color, name, row in runs:
        points = " ".join(f"{x},{y}" for x, y in (px(i, s) for i, s in enumerate(series)))
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for i, seconds in enumerate(series):
            x, y = px(i, seconds)
            out.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>')
        _, mean_y = px(0, statistics.fmean(series))
        out.append(f'<line x1="{pad}" y1="{mean_y}" x2="{width - pad}" y2="{mean_y}" '
                   f'stroke="{color}" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{width - pad - 170}" y="{pad - 18 + 14 * row}" fill="{color}">'
                   f'{name}: CV {cv(series):.2f} (dashed: mean)</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def _ticks(top: float) -> list[float]:
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500) if top / s <= 8)
    return [step * i for i in range(int(top // step) + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=BLOCKS,
                        help=f"intervals measured in each run (default: {BLOCKS})")
    args = parser.parse_args()
    if args.blocks < 2:
        parser.error("--blocks must be at least 2 (a coefficient of variation needs a spread)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pole-bench-") as directory:
        pole, short = pole_intervals(Path(directory), args.blocks)
        pow_native = pow_intervals(Path(directory), args.blocks)
    scale = statistics.fmean(pole) / statistics.fmean(pow_native)
    pow_scaled = [gap * scale for gap in pow_native]
    svg_plot(pole, pow_scaled, PLOT)
    report("block_intervals", {
        "pole_cv": round(cv(pole), 3),
        "pow_cv": round(cv(pow_native), 3),
        "pole_mean_s": round(statistics.fmean(pole), 2),
        "pow_mean_s": round(statistics.fmean(pow_scaled), 2),
        "pow_native_mean_s": round(statistics.fmean(pow_native), 2),
        "pow_scale": round(scale, 3),
        "idle_target_interval_s": IdleParams().target_interval,
        "blocks": args.blocks,
        "short_releases": short,
        "release_wait_s": RELEASE_WAIT_S,
        "pole_intervals_s": pole,
        "pow_native_intervals_s": pow_native,
        "seconds": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    main()
