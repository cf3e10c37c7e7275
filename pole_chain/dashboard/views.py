"""What the dashboard shows, read from the node's public JSON-RPC only.

`ChainViews` is a web3 client of the node it is served by (its own RPC URL), like any
wallet or script: it reads blocks, tasks, announcements, releases and revealed models with
`w3.eth` and `w3.pole`, and decodes them with the project's own decoders (vm_hooks.seal for
seals, miner.messages for signed messages), so the page never decodes RLP or seals in a
second language. Every view is JSON-ready (ints that may pass 2^53 are strings).

    overview()          node status, chain id, head, the node's clock, peers, dev accounts
    blocks(count)       the latest canonical blocks: kind, miner, accuracies, score, txs
    tasks()             every task with value, state, anchor, announcements and release,
                        and whether its training set is encrypted (the blob miners fetch)
    miner(address)      one coinbase through each task: training, announced, released,
                        revealed, won or lost; bond, balance, rewards earned

A miner publishes nothing while it trains, so "training" means what the chain shows: the
task is the best open one, its anchor exists, and no announcement from this address yet.
"""
from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any, Optional

from eth_utils import encode_hex, is_address, to_canonical_address, to_checksum_address
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.types import RPCEndpoint

from miner.bonds import bond_state, format_ether
from miner.datasets import DatasetFormatError
from miner.encrypted_tasks import EncryptedTrainingSet, decode_training_blob
from miner.messages import MessageError, Release, SolutionAnnouncement
from miner.pole_module import attach_pole, error_message
from pole_chain.clients.data_node import node_time, settled_anchor, valid_announcements
from vm_hooks.genesis import dev_accounts
from vm_hooks.seal import BlockKind, SealError, read_block_seal
from vm_hooks.task import Task, TaskAnchor

#: Blocks kept in memory for the chain view and its plots (the newest ones).
BLOCK_WINDOW = 256
KIND_NAMES = {BlockKind.POLE: "PoLe", BlockKind.IDLE: "idle", BlockKind.DEV: "dev"}

#: A miner's states for one task, in the order a task goes through them.
MINER_STATES = ("waiting", "training", "announced", "released", "revealed", "won", "lost")


class ViewError(ValueError):
    """A view was asked for something malformed (the message says what)."""


class ChainViews:
    """The dashboard's read-only views over one node's JSON-RPC."""

    def __init__(self, rpc_url: str) -> None:
        self.rpc_url = rpc_url
        self.w3 = attach_pole(Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30})))
        self._lock = threading.Lock()
        self._blocks: dict[int, dict[str, Any]] = {}  # number -> view, canonical as last seen
        self._chain_id: Optional[int] = None
        #: views of closed tasks (settled or expired do not change, unless a reorg changes
        #: the result: its block number is part of the key)
        self._closed: dict[tuple, dict[str, Any]] = {}
        #: dataset digest -> encrypted or not (None: malformed); blobs are content-addressed
        self._encrypted: dict[bytes, Optional[bool]] = {}

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # ----------------------------------------------------------------------------------
    # overview

    def overview(self) -> dict[str, Any]:
        with self._lock:
            status = self.w3.pole.node_status()
            dev = bool(status["dev"])
            accounts = []
            if dev:
                for index, account in enumerate(dev_accounts()):
                    balance = int(self.w3.eth.get_balance(account.address))
                    accounts.append({"index": index, "address": account.address,
                                     "balance": str(balance), "balanceText": format_ether(balance)})
            return {
                "rpcUrl": self.rpc_url,
                "chainId": hex(int(status["chainId"])),
                "dev": dev,
                "automine": status.get("automine"),
                "blockTime": status.get("blockTime"),
                "mineIdle": status.get("mineIdle"),
                "headNumber": int(status["headNumber"]),
                "headHash": encode_hex(status["headHash"]),
                "headTimestamp": int(status["headTimestamp"]),
                "nodeTime": node_time(self.w3),
                "mempoolSize": status.get("mempoolSize"),
                "peers": self._peers(),
                "accounts": accounts,
            }

    def _peers(self) -> dict[str, Any]:
        """admin_peers where the node is on a network; `networking: false` otherwise."""
        try:
            peers = self.w3.manager.request_blocking(RPCEndpoint("admin_peers"), [])
        except Web3RPCError as error:
            return {"networking": False, "note": error_message(error), "list": [], "p2p": None}
        try:
            p2p = self.w3.manager.request_blocking(RPCEndpoint("admin_nodeInfo"), [])["enode"]
        except (Web3RPCError, KeyError, TypeError):
            p2p = None
        listed = []
        for peer in peers:
            network = peer.get("network") or {}
            status = (peer.get("protocols") or {}).get("pole") or {}
            listed.append({
                "id": peer.get("id"),
                "address": network.get("remoteAddress"),
                "inbound": bool(network.get("inbound")),
                "penalty": peer.get("penalty"),
                "head": int(status["number"], 16) if status.get("number") else None,
            })
        return {"networking": True, "note": "", "list": listed, "p2p": p2p}

    # ----------------------------------------------------------------------------------
    # blocks

    def blocks(self, count: int = 40) -> list[dict[str, Any]]:
        with self._lock:
            self._refresh_blocks()
            numbers = sorted(self._blocks, reverse=True)[:count]
            return [self._blocks[n] for n in numbers]

    def _refresh_blocks(self) -> None:
        """Fetch new blocks from the head down to the first one already held (reorgs too)."""
        head = self.w3.eth.get_block("latest")
        number = int(head["number"])
        for stale in [n for n in self._blocks if n > number]:
            del self._blocks[stale]
        block: Any = head
        while True:
            view = _block_view(block)
            self._blocks[view["number"]] = view
            parent_number = view["number"] - 1
            if parent_number < 0 or parent_number < number - BLOCK_WINDOW:
                break
            held = self._blocks.get(parent_number)
            if held is not None and held["hash"] == view["parentHash"]:
                break
            block = self.w3.eth.get_block(parent_number)
        for old in [n for n in self._blocks if n < number - BLOCK_WINDOW]:
            del self._blocks[old]
        for view in self._blocks.values():  # intervals, now that parents are held
            parent = self._blocks.get(view["number"] - 1)
            # genesis has a fixed timestamp: block 1's distance from it is no interval
            known = parent is not None and parent["number"] > 0
            view["interval"] = view["timestamp"] - parent["timestamp"] if known else None

    # ----------------------------------------------------------------------------------
    # tasks

    def tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._task_view(task, now) for task, now in self._tasks_now()]

    def _tasks_now(self) -> list[tuple[Task, int]]:
        now = node_time(self.w3)
        best = self.w3.pole.best_task()
        tasks = []
        for task in self.w3.pole.tasks():
            if best is not None and best.task_id == task.task_id:
                task = best  # the one with its anchor
            tasks.append((task, now))
        return tasks

    def _anchor(self, task: Task) -> Optional[TaskAnchor]:
        if task.anchor is not None:
            return task.anchor
        if task.result is not None:
            return settled_anchor(self.w3, task.result)
        return None

    def _task_view(self, task: Task, now: int) -> dict[str, Any]:
        key = (task.task_id, task.status, task.result.block_number if task.result else None)
        if not task.is_open and key in self._closed:
            return dict(self._closed[key], secondsLeft=task.deadline - now)
        view = self._fresh_task_view(task, now)
        if not task.is_open:
            self._closed[key] = view
        return dict(view)

    def _fresh_task_view(self, task: Task, now: int) -> dict[str, Any]:
        anchor = self._anchor(task)
        announcements: list[dict[str, Any]] = []
        release = None
        if anchor is not None:
            announcements = self._announcements(task, anchor.hash)
            release = self._release(task.task_id, anchor.hash)
        result = task.result
        return {
            "id": task.task_id,
            "poster": to_checksum_address(task.poster),
            "reward": str(task.reward),
            "rewardText": format_ether(task.reward),
            "valueText": _ether_rate(task.reward, task.time_limit),
            "modelSpec": encode_hex(task.model_spec),
            "datasetDigest": encode_hex(task.dataset_digest),
            "encrypted": self._is_encrypted(task.dataset_digest),
            "testSetCommitment": encode_hex(task.test_set_commitment),
            "minTrainBps": task.min_train_bps,
            "timeLimit": task.time_limit,
            "solutionsWanted": task.solutions_wanted,
            "postedAt": task.posted_at,
            "deadline": task.deadline,
            "secondsLeft": task.deadline - now,
            "status": task.status.label,
            "anchor": None if anchor is None else {"number": anchor.number,
                                                    "hash": encode_hex(anchor.hash)},
            "announcements": announcements,
            "release": release,
            "result": None if result is None else {
                "winner": to_checksum_address(result.winner),
                "modelCommitment": encode_hex(result.model_commitment),
                "trainBps": result.train_bps,
                "testBps": result.test_bps,
                "blockNumber": result.block_number,
            },
        }

    def _is_encrypted(self, digest: bytes) -> Optional[bool]:
        """Whether the blob a task's dataset digest names decodes as an encrypted training
        set, as a miner fetching it (pole_getBlob) sees it; None while this node does not
        hold it, or if it is malformed. Fetched once per digest: its bytes cannot change."""
        if digest in self._encrypted:
            return self._encrypted[digest]
        try:
            blob = self.w3.pole.get_blob(digest)
        except Web3RPCError:
            return None  # not here (yet): asked again on the next view
        try:
            encrypted: Optional[bool] = isinstance(decode_training_blob(blob), EncryptedTrainingSet)
        except DatasetFormatError:
            encrypted = None
        self._encrypted[digest] = encrypted
        return encrypted

    def _announcements(self, task: Task, anchor_hash: bytes) -> list[dict[str, Any]]:
        try:
            raw = self.w3.pole.announcements(task.task_id, anchor_hash)
        except Web3RPCError:
            return []
        found = valid_announcements(
            raw, task_id=task.task_id, anchor_hash=anchor_hash, chain_id=self.chain_id
        )
        views = []
        for announcement in found:
            revealed = self.w3.pole.get_model(announcement.model_commitment) is not None
            views.append({
                "miner": to_checksum_address(announcement.miner),
                "modelCommitment": encode_hex(announcement.model_commitment),
                "trainBps": announcement.train_bps,
                "bonded": bond_state(self.w3, announcement.miner).bonded,
                "revealed": revealed,
            })
        return views

    def _release(self, task_id: int, anchor_hash: bytes) -> Optional[dict[str, Any]]:
        try:
            raw = self.w3.pole.get_release(task_id, anchor_hash)
        except Web3RPCError:
            return None
        if not raw:
            return None
        try:
            release = Release.decode(raw)
        except MessageError:
            return None
        return {
            "digest": encode_hex(release.digest),
            "admitted": [encode_hex(commitment) for commitment in release.admitted],
        }

    # ----------------------------------------------------------------------------------
    # one miner

    def miner(self, address: str) -> dict[str, Any]:
        if not is_address(address):
            raise ViewError(f"not a 20-byte hex address: {address!r}")
        miner = to_checksum_address(address)
        with self._lock:
            self._refresh_blocks()
            tasks = [self._task_view(task, now) for task, now in self._tasks_now()]
            balance = int(self.w3.eth.get_balance(miner))
            bond = bond_state(self.w3, to_canonical_address(miner))
            sealed = [b for b in self._blocks.values() if b["kind"] == "PoLe" and b["miner"] == miner]
        per_task = [_miner_task_state(miner, task, bond.bonded) for task in tasks]
        earned = sum(int(t["reward"]) for t in tasks
                     if t["result"] is not None and t["result"]["winner"] == miner)
        current = _current(per_task)
        return {
            "address": miner,
            "balance": str(balance),
            "balanceText": format_ether(balance),
            "bonded": bond.bonded,
            "bondText": format_ether(bond.amount),
            "rewardsEarned": str(earned),
            "rewardsText": format_ether(earned),
            "current": current,
            "tasks": per_task,
            "sealedBlocks": sorted((b["number"] for b in sealed), reverse=True),
            "states": list(MINER_STATES),
        }


def _ether_rate(wei: int, seconds: int) -> str:
    """Reward per second of time limit (what miners rank tasks by), 4 significant digits."""
    return f"{Decimal(wei) / seconds / 10**18:.4g} ETH/s"


def _block_view(block: Any) -> dict[str, Any]:
    """One block as the chain view shows it; its seal read by vm_hooks.seal."""
    number = int(block["number"])
    view: dict[str, Any] = {
        "number": number,
        "hash": encode_hex(block["hash"]),
        "parentHash": encode_hex(block["parentHash"]),
        "timestamp": int(block["timestamp"]),
        "miner": to_checksum_address(block["miner"]),
        "score": int(block["difficulty"]),
        "txCount": len(block["transactions"]),
        "kind": "genesis" if number == 0 else "?",
        "taskId": None,
        "trainBps": None,
        "testBps": None,
        "idleWork": None,
        "interval": None,
    }
    if number == 0:
        return view
    try:
        sealed = read_block_seal(block)
    except SealError:
        return view
    view["kind"] = KIND_NAMES.get(sealed.seal.kind, sealed.seal.kind.name.lower())
    if sealed.seal.kind is BlockKind.POLE:
        view.update(taskId=sealed.task_id, trainBps=sealed.seal.train_bps,
                    testBps=sealed.seal.test_bps,
                    modelCommitment=encode_hex(sealed.commitment))
    elif sealed.seal.kind is BlockKind.IDLE:
        view["idleWork"] = sealed.seal.idle_work
    return view


def _miner_task_state(miner: str, task: dict[str, Any], bonded: bool) -> dict[str, Any]:
    """Where `miner` stands in `task`, from public data only, and the steps it went through."""
    mine = next((a for a in task["announcements"] if a["miner"] == miner), None)
    release = task["release"]
    result = task["result"]
    admitted = bool(mine and release and mine["modelCommitment"] in release["admitted"])
    steps: list[dict[str, Any]] = []
    if task["anchor"] is not None:
        steps.append({"state": "training",
                      "text": f"task {task['id']} is the best open task since block "
                              f"#{task['anchor']['number']}: training"})
    if mine is not None:
        steps.append({"state": "announced",
                      "text": f"announced model {mine['modelCommitment'][:12]}… with training "
                              f"accuracy {mine['trainBps'] / 100:.2f} %"})
    if release is not None and mine is not None:
        steps.append({"state": "released",
                      "text": "the poster released the test set; "
                              + ("this model is admitted" if admitted else "this model is NOT admitted")
                              + f" ({len(release['admitted'])} admitted)"})
    if mine is not None and mine["revealed"]:
        steps.append({"state": "revealed", "text": "model revealed to the network"})
    if result is not None and mine is not None:
        if result["winner"] == miner:
            steps.append({"state": "won",
                          "text": f"won block #{result['blockNumber']} with test accuracy "
                                  f"{result['testBps'] / 100:.2f} %: {task['rewardText']} paid"})
        else:
            steps.append({"state": "lost",
                          "text": f"lost to {result['winner'][:10]}… (test accuracy "
                                  f"{result['testBps'] / 100:.2f} % in block #{result['blockNumber']})"})
    if task["status"] == "expired" and (result is None):
        steps.append({"state": "expired", "text": "the task expired unsolved; the poster was refunded"})
    if mine is None and task["status"] != "open":
        steps = []  # this miner took no part in it
    state = steps[-1]["state"] if steps else "waiting"
    if state == "training" and not bonded:
        state = "unbonded"
    return {
        "taskId": task["id"],
        "taskStatus": task["status"],
        "state": state,
        "anchor": task["anchor"],
        "secondsLeft": task["secondsLeft"],
        "timeLimit": task["timeLimit"],
        "minTrainBps": task["minTrainBps"],
        "trainBps": mine["trainBps"] if mine else None,
        "testBps": result["testBps"] if result and mine and result["winner"] == miner else None,
        "admitted": admitted,
        "reward": task["reward"],
        "rewardText": task["rewardText"],
        "steps": steps,
    }


def _current(per_task: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The task this miner works on now: an open one with an anchor, else its latest one."""
    for entry in per_task:
        if entry["taskStatus"] == "open" and entry["anchor"] is not None:
            return entry
    took_part = [e for e in per_task if e["steps"] and e["state"] not in ("waiting",)]
    return took_part[-1] if took_part else None

