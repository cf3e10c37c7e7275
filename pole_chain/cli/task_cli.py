"""`pole task post|release|status|list` and `pole model get`: the data node on the command line.

pole_chain/cli/main.py's SUBCOMMANDS points at `configure_task_command` and
`configure_model_command`.

Every command talks to a node over JSON-RPC (web3's HTTPProvider) and exits non-zero with a
one-line message, never a traceback, when something is wrong: a bad dataset, a node that
cannot be reached, a task that is not settled.
"""
from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from web3 import Web3

DEFAULT_RPC = "http://127.0.0.1:8545"
KEY_VARIABLE = "POLE_KEY"
POLE_HOME_VARIABLE = "POLE_HOME"


def default_workdir() -> Path:
    """$POLE_HOME/data-node (POLE_HOME defaults to ~/.pole), where test sets are kept."""
    home = Path(os.environ.get(POLE_HOME_VARIABLE) or Path.home() / ".pole")
    return home / "data-node"


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


# --------------------------------------------------------------------------------------
# argument types
# --------------------------------------------------------------------------------------


def _ether(text: str) -> int:
    """An amount in ether (decimal) -> wei."""
    value = _finite_decimal(text, "not an amount of ether")
    wei = value * 10**18
    if not value > 0 or wei != wei.to_integral_value():
        raise argparse.ArgumentTypeError(f"reward must be positive with at most 18 decimals, got {text}")
    return int(wei)


def _finite_decimal(text: str, complaint: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{complaint}: {text!r}") from None
    if not value.is_finite():  # NaN and Infinity parse as Decimals too
        raise argparse.ArgumentTypeError(f"{complaint}: {text!r}")
    return value


def _fraction_bps(text: str) -> int:
    """An accuracy as a fraction 0..1 (0.9 = 90 %) -> basis points."""
    value = _finite_decimal(text, "not a number")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"accuracy is a fraction between 0 and 1 (0.9 = 90 %), got {text}")
    return int((value * 10000).to_integral_value())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _test_fraction(text: str) -> float:
    value = _positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _add_rpc(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rpc", default=DEFAULT_RPC, metavar="URL",
        help=f"JSON-RPC URL of a PoLe node (default: {DEFAULT_RPC})",
    )


def _add_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key", default=None, metavar="HEX",
        help=f"the data node's private key, hex (default: ${KEY_VARIABLE}); on a devnet, "
        "any key `pole node --dev` prints",
    )


def _add_workdir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir", type=Path, default=None, metavar="DIR",
        help="where the secret test sets of posted tasks are kept, one directory per task "
        f"(default: ${POLE_HOME_VARIABLE}/data-node, ${POLE_HOME_VARIABLE} defaulting to ~/.pole)",
    )


# --------------------------------------------------------------------------------------
# parsers
# --------------------------------------------------------------------------------------


def configure_task_command(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="task_command", metavar="ACTION", required=True)

    post = actions.add_parser(
        "post", help="post a training task with a reward in escrow; prints the task id",
        description="Split the dataset, upload the training set and model spec, keep the test "
        "set secret in --workdir, and post the task with --reward in escrow. Prints the task id.",
    )
    _add_rpc(post)
    _add_key(post)
    post.add_argument(
        "--dataset", default="digits", metavar="NAME|PATH",
        help="built-in dataset (digits, breast_cancer, wine, iris) or a .npz (arrays X, y) / "
        ".csv (label in the last column) file (default: digits)",
    )
    post.add_argument(
        "--model", default="mlp", metavar="NAME|PATH",
        help="architecture: logreg, mlp, cnn (image datasets), or a JSON model spec file "
        "(default: mlp)",
    )
    post.add_argument("--reward", type=_ether, default=_ether("1"), metavar="ETHER",
                      help="reward paid to the winning miner, in ether (default: 1.0)")
    post.add_argument("--accuracy", type=_fraction_bps, default=9000, metavar="FRACTION",
                      help="training accuracy a solution must reach, 0..1 (default: 0.9)")
    post.add_argument("--time-limit", type=_positive_int, default=300, metavar="SECONDS",
                      help="seconds until the task is overdue and refunded; miners rank tasks "
                      "by reward per second of it (default: 300)")
    post.add_argument("--solutions", type=_positive_int, default=3, metavar="N",
                      help="announced solutions to wait for before releasing the test set "
                      "(default: 3)")
    post.add_argument("--test-fraction", type=_test_fraction, default=0.2, metavar="FRACTION",
                      help="share of the dataset held out as the secret test set (default: 0.2)")
    post.add_argument("--seed", type=int, default=0,
                      help="seed of the train/test split (default: 0; the test set's salt is "
                      "always random)")
    post.add_argument("--encrypt", action="store_true",
                      help="publish the training features IPFE-encrypted: miners get the keys "
                      "of their own SML rows once the task's anchor exists (docs/IPFE.md); "
                      "`pole task release` serves the keys while it waits")
    _add_workdir(post)
    post.set_defaults(run=run_task_post)

    rel = actions.add_parser(
        "release", help="release a task's test set to the miners that announced solutions",
        description="Admit the solutions announced for the task at the current head, upload the "
        "secret test set and send the signed release. With --auto, first wait for the task's "
        "number of solutions (or --timeout).",
    )
    rel.add_argument("task_id", type=_positive_int, metavar="TASK", help="the task id")
    _add_rpc(rel)
    _add_key(rel)
    rel.add_argument("--auto", action="store_true",
                     help="wait until the task's wanted number of solutions is announced by "
                     "bonded miners, or --timeout passes with at least one, then release; "
                     "a countdown on stderr says how many are in and how long is left")
    rel.add_argument("--timeout", type=_positive_float, default=None, metavar="SECONDS",
                     help="with --auto: release to fewer solutions after this long (default: "
                     "half the time left until the task's deadline, by the node's clock)")
    _add_workdir(rel)
    rel.set_defaults(run=run_task_release)

    stat = actions.add_parser(
        "status", help="show a task: status, reward, deadline, winner, accuracies",
        description="Show a task as the node's head sees it: open/settled/expired, reward, "
        "deadline, winner and accuracies, announced solutions.",
    )
    stat.add_argument("task_id", type=_positive_int, metavar="TASK", help="the task id")
    _add_rpc(stat)
    stat.set_defaults(run=run_task_status)

    listing = actions.add_parser(
        "list", help="every task: id, state, reward, value, deadline, accuracies if settled",
        description="Every task the registry knows, one line each: id, open/settled/expired, "
        "reward, value (reward per second of time limit, what miners rank tasks by), "
        "deadline by the node's clock, and the winner's accuracies once settled.",
    )
    _add_rpc(listing)
    listing.set_defaults(run=run_task_list)


def configure_model_command(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    get = actions.add_parser(
        "get", help="fetch, check and export the winning model of a settled task",
        description="Fetch the winning model of a settled task by its on-chain commitment, check "
        "it hashes to that commitment and reproduces the claimed test accuracy on the released "
        "test set, and write a torch module that predicts on raw features as the data node's "
        "dataset held them (its quantisation is part of the module; meta.json states the input): "
        "model.safetensors, model.pt, the committed blob model.plmd and meta.json. "
        "Load it with pole_chain.clients.model_delivery.load_delivered_model(DIR).",
    )
    get.add_argument("task_id", type=_positive_int, metavar="TASK", help="the task id")
    _add_rpc(get)
    get.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="directory to write the model files to (created if missing)")
    get.add_argument("--allow-unchecked", action="store_true",
                     help="write the model even when the released test set cannot be had to "
                     "re-check the claimed test accuracy (meta.json then says "
                     '"test_accuracy_checked": false)')
    get.set_defaults(run=run_model_get)


# --------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------


def _connect(url: str) -> Web3:
    """A Web3 (with `w3.pole`) on the node at `url`, after one call proves the node answers."""
    from miner.pole_module import pole_web3

    w3 = pole_web3(url)
    try:
        w3.pole.node_status()
    except Exception as error:  # connection refused, DNS, not JSON-RPC...
        raise CommandError(f"cannot reach a PoLe node at {url}: {_reason(error)}") from None
    return w3


def _key(args: argparse.Namespace) -> str:
    key = args.key or os.environ.get(KEY_VARIABLE)
    if not key:
        raise CommandError(f"no key: pass --key HEX or set ${KEY_VARIABLE}")
    return key


def _check_sources(dataset: str, model: str) -> None:
    """Fail on a mistyped dataset or model before anything talks to the node."""
    from miner.datasets import BUILTIN_DATASETS
    from miner.model_spec import PREDEFINED_MODELS

    if dataset not in BUILTIN_DATASETS:
        path = Path(dataset).expanduser()
        if path.suffix.lower() not in (".npz", ".csv"):
            raise CommandError(
                f"--dataset {dataset!r} is neither a built-in dataset "
                f"({', '.join(BUILTIN_DATASETS)}) nor a .npz or .csv file"
            )
        if not path.is_file():
            raise CommandError(f"--dataset {dataset}: no such file")
    if model not in PREDEFINED_MODELS and not Path(model).expanduser().is_file():
        raise CommandError(
            f"--model {model!r} is neither a predefined model ({', '.join(PREDEFINED_MODELS)}) "
            "nor a JSON spec file"
        )


def _workdir(args: argparse.Namespace) -> Path:
    return args.workdir or default_workdir()


def run_task_post(args: argparse.Namespace) -> int:
    def run() -> None:
        from pole_chain.clients.data_node import as_account, post_task

        account = as_account(_key(args))
        _check_sources(args.dataset, args.model)
        task_id = post_task(
            _connect(args.rpc), account,
            dataset=args.dataset, model=args.model, reward_wei=args.reward,
            min_train_bps=args.accuracy, time_limit_s=args.time_limit,
            solutions_wanted=args.solutions, test_fraction=args.test_fraction, seed=args.seed,
            workdir=_workdir(args), encrypt=args.encrypt, progress=args.encrypt,
        )
        print(task_id)

    return _guarded("pole task post", run)


def run_task_release(args: argparse.Namespace) -> int:
    def run() -> None:
        from eth_utils import encode_hex, to_checksum_address

        from pole_chain.clients.data_node import as_account, format_bps, get_task, release

        account = as_account(_key(args))
        w3 = _connect(args.rpc)
        wait_for = get_task(w3, args.task_id).solutions_wanted if args.auto else None
        outcome = release(
            w3, account, args.task_id, _workdir(args), wait_for=wait_for, timeout_s=args.timeout,
            progress=(lambda line: print(line, file=sys.stderr)) if args.auto else None,
        )
        verb = "was already released" if outcome.already_released else "released"
        print(
            f"task {args.task_id} {verb} at anchor {encode_hex(outcome.anchor_hash)}: release "
            f"{encode_hex(outcome.digest)} admits {len(outcome.release.admitted)} solution(s)"
        )
        for announcement in outcome.admitted:
            print(f"  {to_checksum_address(announcement.miner)}  train {format_bps(announcement.train_bps)}")
        for announcement in outcome.unbonded:
            print(f"  left out: {to_checksum_address(announcement.miner)} holds no miner bond")

    return _guarded("pole task release", run)


def run_task_list(args: argparse.Namespace) -> int:
    def run() -> None:
        from pole_chain.clients.data_node import task_lines

        print("\n".join(task_lines(_connect(args.rpc))))

    return _guarded("pole task list", run)


def run_task_status(args: argparse.Namespace) -> int:
    def run() -> None:
        from pole_chain.clients.data_node import status

        print(status(_connect(args.rpc), args.task_id))

    return _guarded("pole task status", run)


def run_model_get(args: argparse.Namespace) -> int:
    def run() -> None:
        from pole_chain.clients.model_delivery import fetch_model

        delivery = fetch_model(
            _connect(args.rpc), args.task_id, args.out, allow_unchecked=args.allow_unchecked
        )
        meta = delivery.meta
        checked = meta["checked_test_bps"]
        print(
            f"task {args.task_id}: model 0x{meta['model_commitment'][2:18]}… by {meta['winner']} "
            f"checked against its commitment; written to {delivery.out_dir}"
        )
        print(
            f"  claimed: training {meta['train_bps'] / 100:.2f} %, test {meta['test_bps'] / 100:.2f} %; "
            + (f"exported module on the released test set: {checked / 100:.2f} %"
               if checked is not None else "test accuracy NOT re-checked")
        )
        if delivery.warning:
            print(f"pole model get: {delivery.warning}", file=sys.stderr)

    return _guarded("pole model get", run)


def _guarded(name: str, run: Callable[[], None]) -> int:
    """Run a command; expected failures become one line on stderr and exit status 1."""
    from miner.datasets import DatasetFormatError
    from miner.model_spec import ModelSpecError
    from web3.exceptions import Web3RPCError

    from miner.pole_module import error_message
    from pole_chain.clients.data_node import DataNodeError
    from pole_chain.clients.model_delivery import ModelDeliveryError

    try:
        run()
        return 0
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except (CommandError, DataNodeError, ModelDeliveryError, DatasetFormatError, ModelSpecError) as error:
        print(f"{name}: error: {error}", file=sys.stderr)
    except Web3RPCError as error:
        print(f"{name}: the node refused: {error_message(error)}", file=sys.stderr)
    except OSError as error:  # requests' connection errors, unwritable --out ...
        print(f"{name}: error: {_reason(error)}", file=sys.stderr)
    except Exception as error:  # web3 errors and anything unforeseen: still one line
        print(f"{name}: error: {type(error).__name__}: {_reason(error)}", file=sys.stderr)
    return 1


def _reason(error: BaseException) -> str:
    text = str(error)
    if "Connection refused" in text or "Max retries exceeded" in text:
        return "connection refused (is `pole node` running?)"
    return text.splitlines()[0] if text else type(error).__name__
