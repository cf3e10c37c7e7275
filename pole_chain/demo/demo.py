"""`pole demo`: one PoLe height end to end, with real processes on this machine.

    1. a 4-node devnet (`pole devnet`'s Cluster: full nodes on loopback joined by the p2p
       network); node 0 seals proof-of-work idle blocks, which keep the chain live while
       no task is open; miners use nodes 0..2, the data node node 3, each only its own
       node's RPC, so bonds, tasks, blobs, releases and blocks travel by the network
    2. the task list, empty
    3. three miner processes (different seeds and learning rates) bond 1 ETH each in the
       registry (data nodes admit bonded miners only) and wait for work
    4. a data node posts a digits task with 1 ETH in escrow (data_node.post_task, what
       examples/post_task.py does); with `--encrypted` its training features are published
       IPFE-encrypted (docs/IPFE.md) and each miner first gets the keys of its own SML rows
       from the data node's release loop
    5. the miners train behind their own SML and announce; the data node releases its
       test set to the announced solutions (auto mode); the miners reveal and seal
       sibling blocks; fork choice keeps the best test accuracy, which is paid the escrow
    6. the competing solutions, the winner, balances before and after, the task list
    7. `pole model get`: the delivered model, checked against its commitment, predicts
       the raw held-out data with the accuracy the winning block claims
    8. idle blocks again

Every subprocess is stopped on the way out, on success, failure or Ctrl-C. Logs of the node
and miners go to files in the demo's directory (printed when something fails).
"""
from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 90.0
_LISTENING = re.compile(r"Listening on (http://\S+)")

#: (seed, learning rate) of each miner: different seeds and hyperparameters compete.
MINER_SETTINGS = ((0, 3e-3), (1, 2e-3), (2, 5e-3))
ETHER = 10**18
#: A run of this many empty idle blocks is printed as one line.
COLLAPSE_IDLE_RUN = 4
#: How long the miners may take to bond (one transaction each, in the next idle blocks).
BOND_TIMEOUT_S = 60.0


class DemoError(RuntimeError):
    """The demo cannot go on; the message says which phase failed and why."""


# --------------------------------------------------------------------------------------
# Subprocesses
# --------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path
    lines: "queue.Queue[Optional[str]]" = field(default_factory=queue.Queue)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, count: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(f"    {line}" for line in lines[-count:])


class Children:
    """Subprocesses started by the demo, stopped (TERM, then KILL) however the demo ends."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[Child] = []
        #: run after the children are stopped: the devnet's node processes (not Child's)
        self.cleanups: list[Callable[[], None]] = []

    def start(self, name: str, argv: Sequence[str]) -> Child:
        log_path = self.logdir / f"{name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        log_file = open(log_path, "w")
        process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children
        )
        log_file.close()
        child = Child(name, process, log_path)

        def pump() -> None:  # stdout lines -> queue, and into the log file too
            assert process.stdout is not None
            with open(log_path, "a") as copy:
                for line in process.stdout:
                    copy.write(line)
                    copy.flush()
                    child.lines.put(line.rstrip("\n"))
            child.lines.put(None)

        threading.Thread(target=pump, name=f"{name}-stdout", daemon=True).start()
        self.children.append(child)
        return child

    def stop_all(self, timeout_s: float = 10.0) -> None:
        for child in reversed(self.children):
            if child.alive():
                try:
                    os.killpg(child.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout_s
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.process.wait(timeout=5)
        while self.cleanups:
            self.cleanups.pop()()


def pole_command(name: str, *args: str) -> list[str]:
    """argv (after the interpreter) running `pole NAME ARGS` from this checkout."""
    return ["-m", "pole_chain", name, *args]


def start_node(children: Children, datadir: Path, *extra: str) -> tuple[Child, str]:
    """A `pole node` process on a free port; returns it and its URL once it listens."""
    child = children.start(
        "node",
        pole_command("node", "--rpc-port", "0", "--datadir", str(datadir), "--log-level", "warning", *extra),
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            line = child.lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise DemoError(f"the node did not start within {STARTUP_TIMEOUT_S:.0f} s") from None
        if line is None:
            raise DemoError("the node exited during startup:\n" + child.log_tail())
        match = _LISTENING.search(line)
        if match:
            return child, match.group(1)


# --------------------------------------------------------------------------------------
# Chain views (web3 only)
# --------------------------------------------------------------------------------------


def block_seal(block):
    """The block's seal, read through vm_hooks.seal's header mapping; None if it has none."""
    from vm_hooks.seal import SealError, read_block_seal

    if block["number"] == 0:
        return None
    try:
        return read_block_seal(block)
    except SealError:
        return None


def block_kind(block) -> str:
    sealed = block_seal(block)
    if sealed is None:
        return "genesis" if block["number"] == 0 else "?"
    return {"POLE": "PoLe", "IDLE": "idle", "DEV": "dev"}[sealed.kind.name]


def describe_block(block) -> str:
    kind = block_kind(block)
    sealed = block_seal(block)
    text = f"#{block['number']:<3} {kind:<5} 0x{bytes(block['hash']).hex()[:12]}…"
    if kind == "idle":
        text += f"  work {sealed.idle_work:>7}"
    elif kind == "PoLe":
        text += (
            f"  task {sealed.task_id}, miner {short_address(sealed.miner)}, "
            f"train {sealed.train_bps / 100:.2f} %, test {sealed.test_bps / 100:.2f} %"
        )
    return text + f"  {len(block['transactions'])} tx"


def short_address(address) -> str:
    from eth_utils import to_checksum_address

    text = to_checksum_address(address)
    return text[:8] + "…" + text[-4:]


class BlockWatcher:
    """Prints new canonical blocks as they appear, and reorganisations when they happen.

    Runs of COLLAPSE_IDLE_RUN or more empty idle blocks are shown as one line.
    """

    def __init__(self, w3, say: Callable[[str], None]) -> None:
        self.w3 = w3
        self.say = say
        head = w3.eth.get_block("latest")
        self.last = int(head["number"])
        self.shown: dict[int, bytes] = {self.last: bytes(head["hash"])}
        self._run: list = []  # empty idle blocks not printed yet

    def _block(self, number: int):
        from web3.exceptions import BlockNotFound

        try:
            return self.w3.eth.get_block(number)
        except BlockNotFound:
            return None

    def _check_reorg(self) -> None:
        """Walk back from the last shown block to the first one still canonical."""
        number = self.last
        while number in self.shown:
            block = self._block(number)
            if block is not None and bytes(block["hash"]) == self.shown[number]:
                break
            number -= 1
        if number < self.last:
            self.flush()
            self.say(
                f"  reorganisation: a heavier branch replaces blocks #{number + 1}..#{self.last} "
                "(fork choice: highest total score)"
            )
            for stale in [n for n in self.shown if n > number]:
                del self.shown[stale]
            self.last = number

    def show_new(self) -> list:
        """Fetch and print the new canonical blocks; empty idle blocks wait in a run that
        is printed (as one line when long) before the next other block or on flush()."""
        self._check_reorg()
        head = int(self.w3.eth.block_number)
        blocks = [b for b in (self._block(n) for n in range(self.last + 1, head + 1)) if b is not None]
        for block in blocks:
            self.shown[int(block["number"])] = bytes(block["hash"])
            self.last = max(self.last, int(block["number"]))
            if block_kind(block) == "idle" and not block["transactions"]:
                self._run.append(block)
            else:
                self.flush()
                self.say("  " + describe_block(block))
        return blocks

    def flush(self) -> None:
        run, self._run = self._run, []
        if len(run) >= COLLAPSE_IDLE_RUN:
            self.say(
                f"  #{run[0]['number']}..#{run[-1]['number']}  {len(run)} idle blocks, work "
                f"{_idle_work(run[0])} .. {_idle_work(run[-1])}"
            )
        else:
            for block in run:
                self.say("  " + describe_block(block))

    def wait_for(self, predicate: Callable[[dict], bool], count: int, timeout_s: float) -> list:
        """Show blocks until `count` of them satisfy `predicate`."""
        seen: list = []
        deadline = time.monotonic() + timeout_s
        while len(seen) < count:
            if time.monotonic() > deadline:
                raise DemoError(f"no {count} matching blocks within {timeout_s:.0f} s")
            seen += [b for b in self.show_new() if predicate(b)]
            time.sleep(0.2)
        self.flush()
        return seen


def _idle_work(block) -> int:
    return block_seal(block).idle_work


def task_list(w3) -> list[str]:
    """Every task the registry knows, one line each: what `pole task list` prints."""
    from pole_chain.clients.data_node import task_lines

    return ["  " + line for line in task_lines(w3)]


# --------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    miners: int = 3
    nodes: int = 4  # a devnet: miners on nodes 0..nodes-2, the data node on the last one
    accuracy_bps: int = 9500
    time_limit_s: int = 240
    reward_wei: int = ETHER
    workdir: Optional[Path] = None  # default: a temporary directory, removed afterwards
    encrypted: bool = False  # publish the training features IPFE-encrypted (docs/IPFE.md)


def run_demo(config: DemoConfig, say: Callable[[str], None] = print) -> dict:
    """Run the whole demo; returns a summary dict (winner, accuracies, timings)."""
    started = time.monotonic()
    with ExitStack() as stack:
        if config.workdir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pole-demo-")))
        else:
            root = config.workdir.expanduser()
            root.mkdir(parents=True, exist_ok=True)
        children = Children(root)
        stack.callback(children.stop_all)
        say(
            f"PoLe chain demo: {config.nodes} nodes, {config.miners} miners and a data node on this machine "
            f"(logs in {root}{', removed at the end' if config.workdir is None else ''})"
        )
        try:
            return _run(config, root, children, say, started)
        except KeyboardInterrupt:
            raise
        except Exception as error:
            what = str(error) if isinstance(error, DemoError) else f"{type(error).__name__}: {error}"
            tails = "\n".join(
                f"  last lines of {child.name}.log:\n{child.log_tail(8)}" for child in children.children
            )
            raise DemoError(f"{what}\n{tails}") from error


def _phase(say: Callable[[str], None], started: float, title: str) -> None:
    say(f"\n[{time.monotonic() - started:5.1f} s] {title}")


@dataclass
class _Scene:
    """What the demo's phases share: the chain, who is who, and what happened so far."""

    config: DemoConfig
    root: Path
    children: Children
    say: Callable[[str], None]
    started: float
    w3: Any = None
    url: str = ""  # the data node's node, whose view the demo shows
    urls: list = field(default_factory=list)  # every devnet node's RPC URL
    watcher: Optional[BlockWatcher] = None
    poster: Any = None
    miner_accounts: list = field(default_factory=list)
    names: dict = field(default_factory=dict)  # canonical address -> "miner N"

    def phase(self, title: str) -> None:
        _phase(self.say, self.started, title)

    @property
    def workdir(self) -> Path:
        return self.root / "data-node"


def _run(config: DemoConfig, root: Path, children: Children, say, started: float) -> dict:
    """The demo's phases in order (module docstring); returns the summary."""
    from eth_utils import to_canonical_address

    from vm_hooks.genesis import dev_accounts

    accounts = dev_accounts()
    scene = _Scene(config, root, children, say, started, poster=accounts[0])
    scene.miner_accounts = accounts[1 : 1 + config.miners]
    scene.names = {
        to_canonical_address(a.address): f"miner {i + 1}" for i, a in enumerate(scene.miner_accounts)
    }
    _start_chain(scene)
    scene.phase("2. Task list before")
    for line in task_list(scene.w3):
        say(line)
    miners = _start_miners(scene)
    task_id, test_set, balances_before = _post(scene)
    outcome, result = _release_and_settle(scene, task_id, miners)
    rows = _competing_solutions(scene, outcome, result, test_set)
    _show_balances(scene, balances_before)
    delivered_bps, delivery = _deliver(scene, task_id, result, test_set)
    scene.phase("8. The task is settled: idle blocks resume")
    scene.watcher.wait_for(lambda b: block_kind(b) == "idle", 2, timeout_s=60)
    scene.phase("Done. Stopping the node and miners.")
    return {
        "task_id": task_id,
        "winner": result.winner,
        "test_bps": result.test_bps,
        "delivered_bps": delivered_bps,
        "solutions": [(a.miner, a.train_bps, t) for a, t in rows],
        "checked_test_bps": delivery.meta["checked_test_bps"],
        "encrypted": config.encrypted,
        "seconds": time.monotonic() - started,
    }


def _start_chain(scene: _Scene) -> None:
    """1. A devnet (pole_chain/devnet): full nodes on loopback joined by the p2p network,
    node 0 sealing proof-of-work idle blocks. The demo talks to the last node, the data
    node's: every block, bond and announcement it shows arrived there over the network."""
    from miner.pole_module import pole_web3
    from pole_chain.devnet.cluster import Cluster

    nodes = scene.config.nodes
    scene.phase(f"1. Starting a {nodes}-node PoLe devnet (full nodes, proof-of-work idle blocks)")
    cluster = Cluster(scene.root / "devnet", nodes=nodes)
    scene.children.cleanups.append(cluster.stop)
    cluster.start()
    scene.urls = [node.url for node in cluster.members]
    scene.url = scene.urls[-1]
    scene.w3 = pole_web3(scene.url)
    for index, node in enumerate(cluster.members):
        roles = ["idle blocks"] * (index == 0) + ["data node"] * (index == nodes - 1)
        scene.say(f"  node {index}: {node.url} {node.multiaddr}"
                  + (f"  ({', '.join(roles)})" if roles else ""))
    scene.say(f"  chain id {scene.w3.eth.chain_id:#x}; logs in {cluster.root}")
    scene.say("  no task is open, so node 0 seals idle blocks (a light proof of work); node "
              f"{nodes - 1} sees them by gossip:")
    scene.watcher = BlockWatcher(scene.w3, scene.say)
    scene.watcher.wait_for(lambda b: block_kind(b) == "idle", 3, timeout_s=60)


def _miner_url(scene: _Scene, index: int) -> str:
    """Miner `index`'s own node: nodes 0..N-2 in turn (the last is the data node's), or
    the only node of a one-node devnet."""
    spare = len(scene.urls) - 1
    return scene.urls[index % spare] if spare else scene.urls[0]


def _start_miners(scene: _Scene) -> list[Child]:
    """3. One `pole mine --once` process per miner; each bonds on start (data nodes admit
    bonded miners only), and the demo waits for every bond before posting."""
    from miner.bonds import is_bonded
    from vm_hooks.params import MINER_BOND

    scene.phase(f"3. Starting {scene.config.miners} miners (they bond, then wait for a task)")
    miners = []
    for index, account in enumerate(scene.miner_accounts):
        seed, lr = MINER_SETTINGS[index % len(MINER_SETTINGS)]
        seed += index // len(MINER_SETTINGS) * 10
        scene.say(f"  miner {index + 1}: {account.address}  seed {seed}, learning rate {lr}, "
                  f"on node {scene.urls.index(_miner_url(scene, index))}")
        argv = pole_command(
            "mine", "--rpc", _miner_url(scene, index), "--key", "0x" + bytes(account.key).hex(),
            "--seed", str(seed), "--lr", str(lr), "--once", "--no-progress", "--poll", "0.5",
        )
        miners.append(scene.children.start(f"miner{index + 1}", argv))
    deadline = time.monotonic() + BOND_TIMEOUT_S
    while not all(is_bonded(scene.w3, a.address) for a in scene.miner_accounts):
        if time.monotonic() > deadline:
            raise DemoError(f"the miners were not all bonded within {BOND_TIMEOUT_S:.0f} s")
        scene.watcher.show_new()
        time.sleep(0.2)
    scene.watcher.show_new()
    scene.watcher.flush()
    scene.say(
        f"  every miner holds a {MINER_BOND // ETHER} ETH bond in the registry: announcements "
        "from unbonded keys are not admitted"
    )
    return miners


def task_parameters(config: DemoConfig, workdir: Path) -> dict[str, Any]:
    """The demo task's post_task arguments (after the Web3 and the poster)."""
    return dict(
        dataset="digits", model="mlp", reward_wei=config.reward_wei,
        min_train_bps=config.accuracy_bps, time_limit_s=config.time_limit_s,
        solutions_wanted=config.miners, seed=0, workdir=workdir,
        encrypt=config.encrypted, progress=config.encrypted,  # bars: encryption (stderr)
    )


def _post(scene: _Scene) -> tuple[int, Any, dict]:
    """4. The data node posts the task; returns (task id, secret test set, balances before)."""
    from pole_chain.clients.data_node import format_bps, format_ether, load_test_set, post_task

    config = scene.config
    how = ", training features IPFE-encrypted" if config.encrypted else ""
    scene.phase(f"4. The data node posts a task (digits, mlp{how}) from a web3 script")
    balances_before = {address: scene.w3.eth.get_balance(address) for address in _watched(scene)}
    task_id = post_task(scene.w3, scene.poster, **task_parameters(config, scene.workdir))
    test_set = load_test_set(scene.workdir, task_id)
    scene.say(
        f"  task {task_id} posted by {short_address(scene.poster.address)}: reward "
        f"{format_ether(config.reward_wei)} in escrow, min train {format_bps(config.accuracy_bps)}, "
        f"{config.miners} solutions wanted; {test_set.n} test samples kept secret"
    )
    if config.encrypted:
        scene.say(
            "  encrypted: the node holds ciphertexts of the training features (labels in clear); "
            "each miner gets the keys of its own SML rows once the anchor exists, and the clear "
            "set is revealed with the release"
        )
    scene.watcher.show_new()
    scene.watcher.flush()
    return task_id, test_set, balances_before


def _watched(scene: _Scene) -> list[str]:
    """The addresses whose balances the demo shows: poster, registry, miners."""
    from miner.registry_client import registry_contract

    registry = registry_contract(scene.w3)
    return [scene.poster.address, registry.address] + [a.address for a in scene.miner_accounts]


def _release_and_settle(scene: _Scene, task_id: int, miners: list[Child]):
    """5. Auto release, then the miners' sibling blocks until the task is settled."""
    from pole_chain.clients.data_node import release

    config = scene.config
    if config.encrypted:
        scene.phase("5. Miners ask for keys, decrypt, train and announce; the data node serves "
                    "the keys and releases (auto mode)")
    else:
        scene.phase("5. Miners train and announce; the data node releases (auto mode)")
    outcome = release(
        scene.w3, scene.poster, task_id, scene.workdir, wait_for=config.miners,
        timeout_s=config.time_limit_s / 2, progress=lambda line: scene.say("  " + line),
    )
    scene.say(
        f"  released the test set to {len(outcome.admitted)} solution(s), anchor "
        f"0x{outcome.anchor_hash.hex()[:12]}…, release 0x{outcome.digest.hex()[:12]}…"
    )
    scene.say("  miners reveal their models and seal sibling blocks; fork choice keeps the best:")
    deadline = time.monotonic() + config.time_limit_s
    while any(m.alive() for m in miners) and time.monotonic() < deadline:
        scene.watcher.show_new()
        time.sleep(0.2)
    task = _wait_settled(scene.w3, task_id, deadline)
    scene.watcher.show_new()
    scene.watcher.flush()
    return outcome, task.result


def _competing_solutions(scene: _Scene, outcome, result, test_set) -> list:
    """6. Every admitted solution re-evaluated on the test set, and the winner."""
    from miner.integer_eval import evaluate_integer_model
    from miner.integer_model import decode_model
    from miner.sml import model_sml
    from pole_chain.clients.data_node import format_bps

    say, names = scene.say, scene.names
    scene.phase("6. Competing solutions (each revealed model evaluated on the released test set)")
    rows = []
    for announcement in outcome.admitted:
        blob = scene.w3.pole.get_model(announcement.model_commitment)
        test_bps = None
        if blob is not None:
            model = decode_model(blob)
            sml = model_sml(outcome.anchor_hash, announcement.miner, model.spec.input_shape, test_set.d)
            test_bps = evaluate_integer_model(model, sml, test_set)
        rows.append((announcement, test_bps))
    rows.sort(key=lambda row: -(row[1] or -1))
    say(f"  {'miner':<24} {'train':>8} {'test':>8}")
    for announcement, test_bps in rows:
        label = f"{names.get(announcement.miner, '?')} {short_address(announcement.miner)}"
        test = format_bps(test_bps) if test_bps is not None else "not revealed"
        marker = "  <- winner" if announcement.model_commitment == result.model_commitment else ""
        say(f"  {label:<24} {format_bps(announcement.train_bps):>8} {test:>8}{marker}")
    best = max((t for _, t in rows if t is not None), default=None)
    unrevealed = sum(1 for _, t in rows if t is None)
    say(
        f"  winner: {names.get(result.winner, '?')} {short_address(result.winner)} in block "
        f"#{result.block_number}, test {format_bps(result.test_bps)}"
        + (" (the best test accuracy)" if best == result.test_bps and not unrevealed else "")
    )
    if unrevealed:
        say(f"  ({unrevealed} admitted solution(s) were never revealed and sealed, so they did not compete)")
    if best is not None and best != result.test_bps:
        say(
            "  (a better sibling arrived after idle blocks had extended a worse one: fork choice "
            "compares total scores, and each idle block adds 1)"
        )
    return rows


def _show_balances(scene: _Scene, balances_before: dict) -> None:
    """6, continued: balances before and after, and the task list."""
    from eth_utils import to_canonical_address

    from pole_chain.clients.data_node import format_ether

    watched = _watched(scene)
    registry = watched[1]
    balances_after = {address: scene.w3.eth.get_balance(address) for address in watched}
    scene.say("  balances (escrow moves from the poster through the registry to the winner):")
    for address in watched:
        label = "poster" if address == scene.poster.address else (
            "registry" if address == registry else scene.names[to_canonical_address(address)]
        )
        change = balances_after[address] - balances_before[address]
        sign = "+" if change >= 0 else "-"
        scene.say(
            f"    {label:<9} {short_address(address)}  {format_ether(balances_before[address]):>22} -> "
            f"{format_ether(balances_after[address]):>22}  ({sign}{format_ether(abs(change))})"
        )
    scene.say("  task list after:")
    for line in task_list(scene.w3):
        scene.say(line)


def _deliver(scene: _Scene, task_id: int, result, test_set):
    """7. `pole model get`'s delivery, and the delivered module on the raw held-out rows."""
    from pole_chain.clients.data_node import format_bps
    from pole_chain.clients.model_delivery import fetch_model, load_delivered_model

    scene.phase("7. pole model get: fetch, check and use the winning model")
    out_dir = scene.root / "model"
    delivery = fetch_model(scene.w3, task_id, out_dir)
    scene.say(f"  model blob checked against commitment 0x{result.model_commitment.hex()[:12]}…; wrote "
              + ", ".join(sorted(p.name for p in out_dir.iterdir())))
    module = load_delivered_model(out_dir)
    raw, labels = held_out_source_rows(scene.workdir, task_id)  # load_digits() values 0..16
    correct = int((module.predict(raw) == labels).sum())
    delivered_bps = correct * 10000 // test_set.n
    scene.say(
        f"  delivered torch module on the raw held-out data: {correct}/{test_set.n} correct = "
        f"{format_bps(delivered_bps)} (the block claimed {format_bps(result.test_bps)})"
    )
    if delivered_bps != result.test_bps:
        raise DemoError(f"delivered model scores {delivered_bps} bps, block claimed {result.test_bps}")
    return delivered_bps, delivery


def held_out_source_rows(workdir: Path, task_id: int):
    """(X, y): the rows of a built-in dataset's scikit-learn arrays, raw as a user holds them,
    that the data node's split put in task `task_id`'s secret test set."""
    from miner.datasets import load_builtin_source, split_indices
    from pole_chain.clients.data_node import load_local_task

    record = load_local_task(workdir, task_id).record
    raw, labels = load_builtin_source(record["dataset"])
    rows, _ = split_indices(len(labels), record["test_fraction"], record["split_seed"])
    return raw[rows], labels[rows]


def _wait_settled(w3, task_id: int, deadline: float):
    from vm_hooks.task import TaskStatus

    while True:
        task = w3.pole.get_task(task_id)
        if task.status is TaskStatus.SETTLED:
            return task
        if task.status is TaskStatus.EXPIRED:
            raise DemoError(f"task {task_id} expired without a winning block")
        if time.monotonic() > deadline:
            raise DemoError(f"task {task_id} was not settled in time")
        time.sleep(0.2)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def configure_demo_command(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Starts a 4-node devnet (node 0 seals proof-of-work idle blocks), miners on nodes 0-2 and "
        "a data node on node 3 as local processes, "
        "posts a digits task (IPFE-encrypted with --encrypted), lets the miners compete, "
        "releases, settles, and delivers the winning model. Everything is stopped at the end or "
        "on Ctrl-C."
    )
    parser.add_argument("--miners", type=_positive_int, default=3,
                        help="number of competing miner processes (default: 3)")
    parser.add_argument("--accuracy", type=float, default=0.95, metavar="FRACTION",
                        help="training accuracy the task asks for, 0..1 (default: 0.95)")
    parser.add_argument("--time-limit", type=_positive_int, default=240, metavar="SECONDS",
                        help="the task's time limit (default: 240)")
    parser.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                        help="keep the chain, logs, test set and model here (default: a "
                        "temporary directory, removed at the end)")
    parser.add_argument("--encrypted", action="store_true",
                        help="post the task with its training features IPFE-encrypted: miners "
                        "get the keys of their own SML rows from the data node once the anchor "
                        "exists (docs/IPFE.md)")
    parser.set_defaults(run=run_demo_command)


def demo_config(args: argparse.Namespace) -> DemoConfig:
    """The demo's configuration from `pole demo`'s arguments (the accuracy checked before)."""
    return DemoConfig(
        miners=args.miners,
        accuracy_bps=round(args.accuracy * 10000),
        time_limit_s=args.time_limit,
        workdir=args.workdir,
        encrypted=args.encrypted,
    )


def run_demo_command(args: argparse.Namespace) -> int:
    if not 0 <= args.accuracy <= 1:
        print("pole demo: --accuracy is a fraction between 0 and 1", file=sys.stderr)
        return 2
    config = demo_config(args)

    def terminate(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        summary = run_demo(config, say=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print("\npole demo: interrupted; node and miners stopped", file=sys.stderr)
        return 130
    except DemoError as error:
        print(f"\npole demo: failed: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a node or miner that misbehaves: one line, not a traceback
        print(f"\npole demo: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"\n{demo_summary_line(summary)}")
    return 0


def demo_summary_line(summary: dict) -> str:
    """The demo's last line: how long it took, and whether the task was encrypted."""
    if summary["encrypted"]:
        return (f"Demo finished in {summary['seconds']:.0f} s; the task's training data was "
                "encrypted (IPFE): each miner decrypted its own SML projections once the anchor existed.")
    return f"Demo finished in {summary['seconds']:.0f} s."
