"""web3-side client of a PoLe node's ``pole_*`` JSON-RPC methods.

Miners and data nodes talk to a node only through web3, the way a user would: this wraps
``w3.provider.make_request`` for the PoLe methods and converts hex to Python values. Every
message and blob crosses as its canonical bytes (hex), unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from eth_utils import to_canonical_address
from web3 import Web3
from web3.types import RPCEndpoint


class NodeError(RuntimeError):
    """The node answered a ``pole_*`` call with a JSON-RPC error."""

    def __init__(self, method: str, error: dict) -> None:
        super().__init__(f"{method}: {error.get('message')}")
        self.code = error.get("code")
        self.data = error.get("data")


@dataclass(frozen=True)
class TaskResultInfo:
    winner: bytes
    model_commitment: bytes
    train_bps: int
    test_bps: int
    release_digest_prefix: bytes
    block_number: int


@dataclass(frozen=True)
class TaskInfo:
    task_id: int
    poster: bytes
    reward: int
    model_spec: bytes
    dataset_digest: bytes
    test_set_commitment: bytes
    min_train_bps: int
    time_limit: int
    solutions_wanted: int
    posted_at: int
    deadline: int
    status: str
    result: Optional[TaskResultInfo]

    @property
    def is_open(self) -> bool:
        return self.status == "open"


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def _int(value: str) -> int:
    return int(value, 16)


def task_from_json(obj: dict) -> TaskInfo:
    result = obj.get("result")
    return TaskInfo(
        task_id=_int(obj["id"]),
        poster=to_canonical_address(obj["poster"]),
        reward=_int(obj["reward"]),
        model_spec=_bytes(obj["modelSpec"]),
        dataset_digest=_bytes(obj["datasetDigest"]),
        test_set_commitment=_bytes(obj["testSetCommitment"]),
        min_train_bps=_int(obj["minTrainBps"]),
        time_limit=_int(obj["timeLimit"]),
        solutions_wanted=_int(obj["solutionsWanted"]),
        posted_at=_int(obj["postedAt"]),
        deadline=_int(obj["deadline"]),
        status=obj["status"],
        result=None
        if result is None
        else TaskResultInfo(
            winner=to_canonical_address(result["winner"]),
            model_commitment=_bytes(result["modelCommitment"]),
            train_bps=_int(result["trainBps"]),
            test_bps=_int(result["testBps"]),
            release_digest_prefix=_bytes(result["releaseDigest"])[:24],
            block_number=_int(result["blockNumber"]),
        ),
    )


class PoLeClient:
    def __init__(self, w3: Web3) -> None:
        self.w3 = w3

    @classmethod
    def connect(cls, url: str, timeout: float = 60.0) -> "PoLeClient":
        return cls(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout})))

    def call(self, method: str, *params: Any) -> Any:
        response = self.w3.provider.make_request(RPCEndpoint(method), list(params))
        if response.get("error"):
            raise NodeError(method, response["error"])
        return response.get("result")

    # tasks
    def best_task(self) -> Optional[TaskInfo]:
        obj = self.call("pole_bestTask")
        return task_from_json(obj) if obj else None

    def task(self, task_id: int) -> TaskInfo:
        return task_from_json(self.call("pole_task", hex(task_id)))

    def tasks(self) -> List[TaskInfo]:
        return [task_from_json(obj) for obj in self.call("pole_tasks")]

    # blobs
    def put_blob(self, data: bytes) -> bytes:
        return _bytes(self.call("pole_putBlob", "0x" + data.hex()))

    def get_blob(self, digest: bytes) -> bytes:
        return _bytes(self.call("pole_getBlob", "0x" + digest.hex()))

    # commit / release / reveal
    def announce(self, encoded_announcement: bytes) -> bool:
        return bool(self.call("pole_announce", "0x" + encoded_announcement.hex()))

    def announcements(self, task_id: int, parent_hash: bytes) -> List[bytes]:
        return [_bytes(m) for m in self.call("pole_announcements", hex(task_id), "0x" + parent_hash.hex())]

    def release(self, encoded_release: bytes) -> bool:
        return bool(self.call("pole_release", "0x" + encoded_release.hex()))

    def get_release(self, task_id: int, parent_hash: bytes) -> Optional[bytes]:
        found = self.call("pole_getRelease", hex(task_id), "0x" + parent_hash.hex())
        return _bytes(found) if found else None

    def reveal_model(self, model_blob: bytes, coinbase: bytes, parent_hash: bytes) -> bytes:
        return _bytes(
            self.call(
                "pole_revealModel",
                "0x" + model_blob.hex(),
                Web3.to_checksum_address(coinbase),
                "0x" + parent_hash.hex(),
            )
        )

    def get_model(self, commitment: bytes) -> Optional[bytes]:
        found = self.call("pole_getModel", "0x" + commitment.hex())
        return _bytes(found) if found else None

    def seal_block(
        self,
        *,
        parent_hash: bytes,
        coinbase: bytes,
        task_id: int,
        commitment: bytes,
        train_bps: int,
        test_bps: int,
        release_digest: bytes,
    ) -> bytes:
        return _bytes(
            self.call(
                "pole_sealBlock",
                {
                    "parentHash": "0x" + parent_hash.hex(),
                    "coinbase": Web3.to_checksum_address(coinbase),
                    "taskId": hex(task_id),
                    "commitment": "0x" + commitment.hex(),
                    "trainBps": hex(train_bps),
                    "testBps": hex(test_bps),
                    "releaseDigest": "0x" + release_digest.hex(),
                },
            )
        )

    def node_status(self) -> dict:
        return self.call("pole_nodeStatus")
