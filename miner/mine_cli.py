"""`pole mine`: the miner process on the command line (the loop itself is miner/mining.py).

pole_chain/cli/main.py's SUBCOMMANDS points at `configure_mine_command`.

On start the miner bonds MINER_BOND in the task registry if its key is not bonded yet (data
nodes admit announcements only from bonded miners: miner/bonds.py), logging it once.
`--unbond` and `--withdraw-bond` manage the bond and exit. A node that does not answer at
start ends the command after --node-timeout seconds; with --once, so does one that stops
answering later.

Training runs on --device (CUDA when torch sees it) and, with --nproc N or under torchrun,
data-parallel on N processes (miner/distributed.py): rank 0 is the miner, the other ranks
only train. A bad --device or --nproc is refused before anything starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # imported when a subcommand runs (torch is slow to import)
    from miner.distributed import Placement, Replicas

MINER_KEY_VARIABLE = "POLE_MINER_KEY"
DEFAULT_RPC_URL = "http://127.0.0.1:8545"
SUMMARY = "train the best task's model and seal PoLe blocks"
LOG_LEVELS = ("debug", "info", "warning", "error")
log = logging.getLogger("pole.miner")
DEFAULT_NODE_TIMEOUT_S = 30.0
#: How often the start-up check asks a node that does not answer yet.
NODE_RETRY_S = 0.5


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _device(text: str):
    """A torch device that exists here (miner.training.resolve_device)."""
    from miner.training import resolve_device

    try:
        return resolve_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def configure_mine_command(parser: argparse.ArgumentParser) -> None:
    from miner.mining import DEFAULT_POLL_S, DEFAULT_TRAIN_FRACTION
    from miner.training import Hyperparams, default_device

    defaults = Hyperparams()
    parser.epilog = (
        "Each height: read the best open task at the head, train its model behind this "
        "miner's SML until the task's training accuracy is met, announce the commitment, "
        "wait for the poster's release, then reveal the model and seal a block. Work is "
        "abandoned when the head moves before the release. Node errors are logged and retried; the miner "
        "stops on Ctrl-C."
    )
    parser.add_argument("--rpc", default=DEFAULT_RPC_URL, metavar="URL",
                        help=f"JSON-RPC URL of the node (default: {DEFAULT_RPC_URL})")
    parser.add_argument("--key", default=None, metavar="HEX",
                        help="private key of the miner (the coinbase that gets the rewards); "
                        f"default: ${MINER_KEY_VARIABLE}, which keeps it out of the process list")
    parser.add_argument("--seed", type=_non_negative_int, default=0, metavar="N",
                        help="training seed: weight init and shuffling (default: 0)")
    parser.add_argument("--lr", type=_positive_float, default=defaults.learning_rate, metavar="X",
                        help=f"Adam learning rate (default: {defaults.learning_rate})")
    parser.add_argument("--epochs", type=_positive_int, default=defaults.max_epochs, metavar="N",
                        help=f"at most this many epochs per height (default: {defaults.max_epochs})")
    parser.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size, metavar="N",
                        help=f"minibatch size (default: {defaults.batch_size})")
    parser.add_argument("--weight-bits", type=int, choices=(8, 16), default=defaults.weight_bits,
                        help=f"integer model weight width (default: {defaults.weight_bits})")
    parser.add_argument("--device", type=_device, default=default_device(), metavar="DEVICE",
                        help="where the float model trains: cpu, cuda or cuda:N (default: cuda "
                        "when available, else cpu; here: %(default)s). The integer model and "
                        "its claimed accuracy are always computed on the CPU")
    parser.add_argument("--nproc", type=_positive_int, default=1, metavar="N",
                        help="train data-parallel on N processes (torch DDP: gloo on cpu, nccl "
                        "on cuda, one GPU each); this process is rank 0 and talks to the node "
                        "(default: 1; under torchrun leave it out)")
    parser.add_argument("--train-fraction", type=_fraction, default=DEFAULT_TRAIN_FRACTION,
                        metavar="F",
                        help="training may use this share of the time left until the task's "
                        f"deadline; the rest waits for the release (default: {DEFAULT_TRAIN_FRACTION})")
    parser.add_argument("--poll", type=_positive_float, default=DEFAULT_POLL_S, metavar="SECONDS",
                        help=f"how often to poll the node (default: {DEFAULT_POLL_S})")
    parser.add_argument("--once", action="store_true",
                        help="stop after one attempt: a height trained for and announced, then "
                        "sealed, refused or abandoned (exit status 0 only if a block was sealed)")
    parser.add_argument("--node-timeout", type=_positive_float, default=DEFAULT_NODE_TIMEOUT_S,
                        metavar="SECONDS",
                        help="give up when the node has not answered for this long: at start, "
                        f"and with --once at any time (default: {DEFAULT_NODE_TIMEOUT_S:.0f})")
    bond = parser.add_mutually_exclusive_group()
    bond.add_argument("--unbond", action="store_true",
                      help="request the miner bond back and exit (the miner stops counting as "
                      "bonded now; --withdraw-bond works after the unbond delay, one day)")
    bond.add_argument("--withdraw-bond", action="store_true",
                      help="withdraw a bond whose unbond delay is over, and exit")
    parser.add_argument("--no-progress", action="store_true", help="no training progress bar")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                        help="logging verbosity on stderr (default: info)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """`pole mine`: check the key and URL, reach the node, bond if needed, then mine."""
    from miner.bonds import BondError
    from miner.distributed import ReplicaGroupBroken, open_replicas, plan_replicas
    from miner.mining import NodeUnreachable
    from miner.pole_module import pole_web3
    from miner.training import serve_training

    try:
        placement = plan_replicas(args.device, args.nproc, os.environ)
    except ValueError as error:
        print(f"pole mine: {error}", file=sys.stderr)
        return 2
    if placement.rank != 0:
        return _follow(placement)
    account = _account(args)
    if account is None:
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    w3 = pole_web3(args.rpc)

    def interrupt(signum: int, frame: Optional[FrameType]) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the miner like Ctrl-C, mid-training too

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if in_main_thread else None
    try:
        _wait_for_node(w3, args.rpc, args.node_timeout)
        if args.unbond or args.withdraw_bond:
            return _manage_bond(w3, account, unbond=args.unbond)
        _bond_on_start(w3, account)
        with open_replicas(placement, serve_training) as replicas:
            return _mine(w3, account, args, replicas)
    except (BondError, NodeUnreachable, ReplicaGroupBroken) as error:
        print(f"pole mine: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before mining started (waiting for the node or a bond)
        print("pole mine: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _follow(placement: Placement) -> int:
    """A torchrun rank other than 0: train each job rank 0 sends; rank 0 does the rest."""
    from miner.distributed import open_replicas
    from miner.training import serve_training

    try:
        with open_replicas(placement, serve_training) as replicas:
            serve_training(replicas)
    except KeyboardInterrupt:
        return 130
    return 0


def _account(args: argparse.Namespace):
    """The miner's LocalAccount, or None after a one-line usage error."""
    from eth_account import Account

    key = args.key or os.environ.get(MINER_KEY_VARIABLE)
    if not key:
        print(f"pole mine: give the miner's key with --key or ${MINER_KEY_VARIABLE}", file=sys.stderr)
        return None
    try:
        account = Account.from_key(key)
    except (ValueError, TypeError) as error:
        print(f"pole mine: --key is not a private key: {error}", file=sys.stderr)
        return None
    if not args.rpc.startswith(("http://", "https://")):
        print(f"pole mine: --rpc must be an http(s) URL, got {args.rpc!r}", file=sys.stderr)
        return None
    return account


def _wait_for_node(w3, url: str, timeout_s: float) -> None:
    """Return once the node answers; NodeUnreachable after `timeout_s` of silence."""
    from miner.mining import TRANSIENT_ERRORS, NodeUnreachable

    give_up_at = time.monotonic() + timeout_s
    said = False
    while True:
        try:
            w3.eth.chain_id
            return
        except TRANSIENT_ERRORS as error:
            if time.monotonic() >= give_up_at:
                raise NodeUnreachable(
                    f"no PoLe node answers at {url} after {timeout_s:.0f} s "
                    f"({type(error).__name__}); is `pole node` running there?"
                ) from None
            if not said:
                log.info("waiting up to %.0f s for the node at %s", timeout_s, url)
                said = True
            time.sleep(NODE_RETRY_S)


def _bond_on_start(w3, account) -> None:
    """Bond MINER_BOND unless the key is bonded: data nodes admit only bonded miners."""
    from eth_utils import encode_hex

    from miner.bonds import bond_state, describe, ensure_bonded, format_ether
    from vm_hooks.params import MINER_BOND

    tx_hash = ensure_bonded(w3, account)
    if tx_hash is not None:
        log.info("bonded %s in the task registry (transaction %s): data nodes admit this "
                 "miner's announcements", format_ether(MINER_BOND), encode_hex(tx_hash))
    else:
        log.info("miner bond: %s", describe(bond_state(w3, account.address)))


def _manage_bond(w3, account, *, unbond: bool) -> int:
    """--unbond / --withdraw-bond: one transaction, one line on stdout."""
    from miner.bonds import format_ether, request_unbond, withdraw_bond

    if unbond:
        available_at = request_unbond(w3, account)
        print(f"{account.address}: unbond requested; no longer admitted by data nodes; "
              f"withdraw with `pole mine --withdraw-bond` from block time {available_at}")
    else:
        amount = withdraw_bond(w3, account)
        print(f"{account.address}: withdrew the bond of {format_ether(amount)}")
    return 0


def _mine(w3, account, args: argparse.Namespace, replicas: Replicas) -> int:
    """The mining loop until Ctrl-C/SIGTERM (or one finished attempt with --once), training
    on `replicas` (one process, or rank 0 of several)."""
    from miner.mining import Miner, MinerConfig, Outcome
    from miner.training import Hyperparams

    config = MinerConfig(
        seed=args.seed,
        hyperparams=Hyperparams(
            learning_rate=args.lr,
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            weight_bits=args.weight_bits,
        ),
        train_fraction=args.train_fraction,
        poll_s=args.poll,
        progress=not args.no_progress,
        give_up_after_s=args.node_timeout if args.once else None,
        device=str(replicas.device),
    )
    miner = Miner(w3, account, config, replicas=replicas)
    try:
        log.info("mining as %s on %s, training on %s", account.address, args.rpc,
                 _where_training(replicas))
        result = miner.run(once=args.once)
    except KeyboardInterrupt:
        log.info("stopped")
        return 1 if args.once else 0
    finally:
        miner.stop()
    if args.once:
        return 0 if result is not None and result.outcome is Outcome.SEALED else 1
    return 0


def _where_training(replicas: Replicas) -> str:
    """For the start-up line: the device, or the processes (and the pids this one spawned)."""
    from miner.distributed import SingleProcess

    if isinstance(replicas, SingleProcess):
        return str(replicas.device)
    pids = " ".join(map(str, replicas.spawned_pids))
    spawned = f"; spawned pids {pids}" if pids else ""
    return f"{replicas.world_size} processes ({replicas.device.type}, {replicas.backend}{spawned})"
