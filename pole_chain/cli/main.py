"""The `pole` command line.

Subcommands are listed in SUBCOMMANDS as name -> (one-line help, "module:function"). The
function receives the subcommand's argparse parser, adds its options and sets
`parser.set_defaults(run=...)` to a function `run(args) -> int` (the exit status). Modules are
imported only when their subcommand runs, so `pole node` never imports torch. Adding a
subcommand is one line in SUBCOMMANDS.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "node": ("run a PoLe node and its JSON-RPC server", "pole_chain.cli.main:configure_node_command"),
    "mine": ("train the best task's model and seal PoLe blocks", "miner.mine_cli:configure_mine_command"),
    "task": ("post, release and inspect training tasks (data node)", "pole_chain.cli.task_cli:configure_task_command"),
    "model": ("fetch and check a task's winning model", "pole_chain.cli.task_cli:configure_model_command"),
    "demo": ("run a 4-node devnet, a data node and three miners through one task", "pole_chain.demo.demo:configure_demo_command"),
    "accounts": ("list the dev accounts and their keys (funded at genesis)", "pole_chain.cli.main:configure_accounts_command"),
    "devnet": ("run N nodes (and M miners) as a local peer-to-peer network", "pole_chain.devnet.cluster:configure_devnet_command"),
}

POLE_HOME_VARIABLE = "POLE_HOME"


def default_datadir(dev: bool) -> Path:
    """$POLE_HOME (default ~/.pole), then devnet/ for dev nodes or node/ otherwise."""
    home = Path(os.environ.get(POLE_HOME_VARIABLE) or Path.home() / ".pole")
    return home / ("devnet" if dev else "node")


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The `pole` parser; only the `selected` subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="pole",
        description="PoLe chain: a Proof-of-Learning blockchain on py-evm.",
    )
    parser.add_argument("--version", action="version", version=f"pole {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (summary, target) in SUBCOMMANDS.items():
        if name == selected:
            subparser = commands.add_parser(name, help=summary, description=summary)
            _load(target)(subparser)
        else:
            commands.add_parser(name, help=summary, add_help=False)
    return parser


def package_version() -> str:
    """The installed pole-chain version (the one `web3_clientVersion` reports too)."""
    from importlib import metadata

    try:
        return metadata.version("pole-chain")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _load(target: str) -> Callable[[argparse.ArgumentParser], None]:
    module_name, _, function_name = target.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in arguments if not a.startswith("-")), None)
    parser = build_parser(selected if selected in SUBCOMMANDS else None)
    args = parser.parse_args(arguments)
    run = getattr(args, "run", None)
    if run is None:  # a known name whose module was not loaded cannot happen; be safe
        parser.error(f"unknown command {args.command!r}")
    return int(run(args) or 0)


# --------------------------------------------------------------------------------------
# pole node
# --------------------------------------------------------------------------------------

LOG_LEVELS = ("debug", "info", "warning", "error")


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return value


def _address(text: str) -> str:
    """A 20-byte hex address, so a typo fails at the command line, not deep in the node."""
    from eth_utils import is_address, to_checksum_address

    if not is_address(text):
        raise argparse.ArgumentTypeError(f"not a 20-byte hex address: {text!r}")
    return to_checksum_address(text)


def configure_node_command(parser: argparse.ArgumentParser) -> None:
    from pole_chain.rpc.server import DEFAULT_RPC_PORT

    parser.epilog = (
        "Dev mode: 10 prefunded accounts from the test mnemonic (the anvil/Hardhat "
        "addresses), unlocked for eth_sendTransaction; a block per transaction (automine) "
        "unless --block-time is given; evm_* methods (evm_mine, evm_snapshot, evm_revert, "
        "evm_increaseTime, evm_setNextBlockTimestamp, evm_setAutomine). "
        "The line 'Listening on http://HOST:PORT' is printed once the server accepts requests."
    )
    parser.add_argument(
        "--datadir",
        type=Path,
        default=None,
        help="directory of the chain database and blobs; reopening it resumes at the stored "
        f"head (default: ${POLE_HOME_VARIABLE}/devnet with --dev, ${POLE_HOME_VARIABLE}/node "
        f"otherwise; ${POLE_HOME_VARIABLE} defaults to ~/.pole)",
    )
    parser.add_argument(
        "--ephemeral",
        action="store_true",
        help="keep the chain in memory only (nothing written; --datadir is ignored)",
    )
    parser.add_argument(
        "--rpc-host",
        default="127.0.0.1",
        help="address the JSON-RPC server binds to (default: 127.0.0.1; 0.0.0.0 serves other "
        "machines)",
    )
    parser.add_argument(
        "--rpc-port",
        type=_port,
        default=DEFAULT_RPC_PORT,
        help=f"JSON-RPC port (default: {DEFAULT_RPC_PORT}; 0 picks a free port, printed on the "
        "Listening line)",
    )
    parser.add_argument(
        "--dev", action="store_true", help="run a development chain (see below)"
    )
    parser.add_argument(
        "--block-time",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="dev only: seal a block every SECONDS instead of one per transaction",
    )
    parser.add_argument(
        "--mine-idle",
        action="store_true",
        help="non-dev only: seal proof-of-work idle blocks in the background",
    )
    _add_network_options(parser)
    parser.add_argument(
        "--no-dashboard",
        action="store_true",
        help="do not serve the web dashboard (GET /dashboard/ on the RPC port)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="logging verbosity on stderr (default: info)",
    )
    parser.set_defaults(run=run_node)


def _add_network_options(parser: argparse.ArgumentParser) -> None:
    """Who is paid for the blocks this node seals, and how it meets its peers."""
    parser.add_argument(
        "--coinbase",
        type=_address,
        default=None,
        metavar="ADDRESS",
        help="address credited with the fees of blocks this node seals (default: zero address)",
    )
    parser.add_argument(
        "--listen",
        default=None,
        metavar="MULTIADDR",
        help="join the peer-to-peer network, listening on MULTIADDR (e.g. "
        "/ip4/0.0.0.0/tcp/30305; tcp/0 picks a free port). The line 'P2P on MULTIADDR' "
        "gives the address peers dial (default with --peer or --mdns: /ip4/127.0.0.1/tcp/0)",
    )
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="a peer to dial and keep dialling, /ip4/HOST/tcp/PORT/p2p/PEER_ID (repeatable)",
    )
    parser.add_argument(
        "--mdns", action="store_true", help="find peers on the local network by mDNS"
    )


def run_node(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.block_time is not None and not args.dev:
        print("pole node: --block-time needs --dev", file=sys.stderr)
        return 2
    if args.mine_idle and args.dev:
        print("pole node: --mine-idle is for non-dev nodes (a dev node mines on demand)",
              file=sys.stderr)
        return 2

    from pole_chain.node.node import Node
    from pole_chain.rpc import RpcServer

    datadir = None if args.ephemeral else (args.datadir or default_datadir(args.dev))
    try:
        node = Node(
            datadir,
            dev=args.dev,
            block_time=args.block_time,
            mine_idle=args.mine_idle,
            coinbase=args.coinbase,
            network=_network_config(args),
        )
    except Exception as exc:  # an unreadable or locked datadir, a wrong genesis...
        print(f"pole node: cannot open the chain in {datadir}: {_one_line(exc)}", file=sys.stderr)
        return 1
    try:
        server = RpcServer(node, args.rpc_host, args.rpc_port)
    except OSError as exc:
        node.close()
        print(
            f"pole node: cannot listen on {args.rpc_host}:{args.rpc_port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    if not args.no_dashboard:
        _mount_dashboard(server, node.dev, datadir)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    server.start()
    try:
        node.start()
    except Exception as exc:  # the network could not listen (port in use, bad multiaddr)
        server.stop()
        node.close()
        print(f"pole node: cannot start: {_one_line(exc)}", file=sys.stderr)
        return 1
    _print_banner(node, server.url, datadir)
    if not args.no_dashboard:
        print(f"Dashboard on {server.url}/dashboard/", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        node.close()
        logging.getLogger("pole.node").info("stopped; chain closed")
    return 0


def _mount_dashboard(server: Any, dev: bool, datadir: Path | None) -> None:
    """The web dashboard on the RPC port (pole_chain/dashboard; docs/DASHBOARD.md); its files
    (the data node's secret test sets, delivered models) under DATADIR/dashboard."""
    import atexit
    import shutil
    import tempfile

    from pole_chain.dashboard import mount_dashboard

    if datadir is None:  # --ephemeral: nothing kept after the node stops
        workdir = Path(tempfile.mkdtemp(prefix="pole-dashboard-"))
        atexit.register(shutil.rmtree, workdir, True)
    else:
        workdir = datadir / "dashboard"
    mount_dashboard(server, dev=dev, workdir=workdir)


def _network_config(args: argparse.Namespace) -> Any:
    """The NetworkConfig for --listen/--peer/--mdns, or None to stay off the network."""
    if args.listen is None and not args.peer and not args.mdns:
        return None
    from pole_chain.net import NetworkConfig
    from pole_chain.net.config import DEFAULT_LISTEN

    return NetworkConfig(
        listen=args.listen or DEFAULT_LISTEN, bootstrap=tuple(args.peer), mdns=args.mdns
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def dev_account_lines() -> list[str]:
    """The genesis-funded accounts with their keys, as anvil prints them."""
    from eth_utils import encode_hex

    from vm_hooks.genesis import dev_accounts
    from vm_hooks.params import DEV_ACCOUNT_BALANCE, DEV_MNEMONIC

    lines = [
        f"Accounts funded at genesis ({DEV_ACCOUNT_BALANCE // 10**18:,} ETH each), from the "
        f"test mnemonic \"{DEV_MNEMONIC}\", path m/44'/60'/0'/0/i:"
    ]
    for index, account in enumerate(dev_accounts()):
        lines.append(f"  ({index}) {account.address}  key {encode_hex(bytes(account.key))}")
    lines.append("These keys are public: use them on devnets only.")
    return lines


def configure_accounts_command(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(run=lambda args: print("\n".join(dev_account_lines())) or 0)


def _print_banner(node: object, url: str, datadir: Path | None) -> None:
    from pole_chain.node.node import Node

    assert isinstance(node, Node)
    lines = []
    if node.dev:
        lines += dev_account_lines() + [""]
    else:
        lines.append("Genesis funds the 10 test-mnemonic accounts (`pole accounts` lists them).")
    status = node.status()
    mode = "dev" if node.dev else "full"
    if node.dev:
        mode += f", block every {node.block_time}s" if node.block_time else ", automine"
    if node.network is not None:
        addresses = node.network.network.node_info().addrs
        lines.append(f"P2P on {addresses[0]} (peer id {node.network.network.peer_id})")
    lines.append(
        f"Listening on {url} (chain id {node.chain_id:#x}, {mode}, "
        f"head #{status['head_number']}, datadir {datadir if datadir else 'in memory'})"
    )
    print("\n".join(lines), flush=True)
