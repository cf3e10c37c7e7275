"""`pole mine`: the miner process on the command line (the loop itself is miner/mining.py).

pole_chain/cli.py's SUBCOMMANDS points at `configure_mine_command`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Optional

MINER_KEY_VARIABLE = "POLE_MINER_KEY"
DEFAULT_RPC_URL = "http://127.0.0.1:8545"
SUMMARY = "train the best task's model and seal PoLe blocks"
LOG_LEVELS = ("debug", "info", "warning", "error")


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


def configure_mine_command(parser: argparse.ArgumentParser) -> None:
    from miner.mining import DEFAULT_POLL_S, DEFAULT_TRAIN_FRACTION
    from miner.training import Hyperparams

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
    parser.add_argument("--train-fraction", type=_fraction, default=DEFAULT_TRAIN_FRACTION,
                        metavar="F",
                        help="training may use this share of the time left until the task's "
                        f"deadline; the rest waits for the release (default: {DEFAULT_TRAIN_FRACTION})")
    parser.add_argument("--poll", type=_positive_float, default=DEFAULT_POLL_S, metavar="SECONDS",
                        help=f"how often to poll the node (default: {DEFAULT_POLL_S})")
    parser.add_argument("--once", action="store_true",
                        help="stop after one attempt: a height trained for and announced, then "
                        "sealed, refused or abandoned (exit status 0 only if a block was sealed)")
    parser.add_argument("--no-progress", action="store_true", help="no training progress bar")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                        help="logging verbosity on stderr (default: info)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from eth_account import Account

    from miner.mining import Miner, MinerConfig, Outcome
    from miner.pole_module import pole_web3
    from miner.training import Hyperparams

    key = args.key or os.environ.get(MINER_KEY_VARIABLE)
    if not key:
        print(f"pole mine: give the miner's key with --key or ${MINER_KEY_VARIABLE}", file=sys.stderr)
        return 2
    try:
        account = Account.from_key(key)
    except (ValueError, TypeError) as error:
        print(f"pole mine: --key is not a private key: {error}", file=sys.stderr)
        return 2
    if not args.rpc.startswith(("http://", "https://")):
        print(f"pole mine: --rpc must be an http(s) URL, got {args.rpc!r}", file=sys.stderr)
        return 2

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
    )
    miner = Miner(pole_web3(args.rpc), account, config)
    log = logging.getLogger("pole.miner")
    log.info("mining as %s on %s", account.address, args.rpc)

    def interrupt(signum: int, frame: Optional[FrameType]) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the miner like Ctrl-C, mid-training too

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if in_main_thread else None
    try:
        result = miner.run(once=args.once)
    except KeyboardInterrupt:
        log.info("stopped")
        return 1 if args.once else 0
    finally:
        miner.stop()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    if args.once:
        return 0 if result is not None and result.outcome is Outcome.SEALED else 1
    return 0
