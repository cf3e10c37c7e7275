"""Time to verify a PoLe block against the time to train its model.

    python -m bench.verify_vs_train [--repeats 5] [--target-bps 9800]

A digits task is posted on a real chain; the model is trained through the miner's SML until
its integer model meets the target training accuracy (train_s), then a second node with the
task's blobs imports the sealed PoLe block: re-execution, the settlement call and the full
seal verification (release signature, commitment, architecture, integer evaluation on the
training and test sets) (verify_s, the median of the repeats). The ratio is what proof of
learning asks of a verifier compared to a miner; for proof of work it is close to zero too.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import rlp
from eth_keys import keys
from eth_utils import keccak

from miner.datasets import encode_dataset, load_builtin, split_dataset
from miner.integer_eval import evaluate_integer_model
from miner.integer_model import encode_model
from miner.messages import Release
from miner.model_spec import build_spec, model_spec_canonical_bytes
from miner.seal_verifier import ModelSealVerifier
from miner.sml import sml_for
from miner.training import train_model
from pole_chain.node.blob_store import BlobStore
from pole_chain.chain.block_production import produce_idle_block, produce_pole_block
from pole_chain.chain.opening import open_chain
from vm_hooks.params import CHAIN_ID, REGISTRY_ADDRESS
from vm_hooks.task import TaskAnchor
from pole_chain.chain.database import open_database
from vm_hooks.genesis import dev_accounts
from pole_chain.node.solution_book import SolutionBook
from vm_hooks.idle_pow import IdleParams
from vm_hooks.registry_calls import best_open_task, encode_call
from vm_hooks.consensus import state_at

from .report import report

POSTER, MINER = dev_accounts()[0], dev_accounts()[1]
FAST_IDLE = IdleParams(initial_work=2, min_work=1)


def node():
    db = open_database(None)
    book = SolutionBook(db, BlobStore(None))
    return open_chain(db, dev=False, verifier=ModelSealVerifier(book), idle=FAST_IDLE), book


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-bps", type=int, default=9_800)
    args = parser.parse_args()

    digits = load_builtin("digits")
    train, test = split_dataset(digits, 0.2, seed=11)
    spec = build_spec("mlp", train.d, train.num_classes, digits.image_shape)
    train_blob, test_blob, spec_blob = encode_dataset(train), encode_dataset(test), model_spec_canonical_bytes(spec)

    miner_chain, miner_book = node()
    for blob in (train_blob, test_blob, spec_blob):
        miner_book.blobs.put(blob)
    builder = miner_chain.get_vm().get_transaction_builder()
    post = POSTER.sign_transaction({
        "to": "0x" + REGISTRY_ADDRESS.hex(), "value": 10**18, "nonce": 0, "gas": 1_000_000,
        "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "chainId": CHAIN_ID, "type": 2,
        "data": encode_call("post_task", [keccak(spec_blob), keccak(train_blob), keccak(test_blob), args.target_bps, 3_600, 1]),
    })
    task_block = produce_idle_block(miner_chain, [builder.decode(bytes(post.raw_transaction))]).block
    parent = miner_chain.get_canonical_head()
    miner = bytes.fromhex(MINER.address[2:])

    sml = sml_for(parent.hash, miner, train.d)
    start = time.perf_counter()
    trained = train_model(spec, train, sml, target_train_bps=args.target_bps, time_limit_s=600, seed=0)
    train_s = time.perf_counter() - start
    model_blob = encode_model(trained.integer_model)
    test_bps = evaluate_integer_model(trained.integer_model, sml, test)

    commitment = miner_book.reveal_model(model_blob, miner, parent.hash)
    release = Release.sign(
        chain_id=CHAIN_ID, task_id=1, anchor_hash=parent.hash, test_set_digest=keccak(test_blob),
        admitted=[commitment], private_key=POSTER.key,
    )
    anchored = TaskAnchor(parent.block_number, parent.hash)  # the task became best after it
    miner_book.add_release(
        release, replace(best_open_task(state_at(miner_chain.chaindb.db, parent)), anchor=anchored)
    )
    pole_block = produce_pole_block(
        miner_chain, [], signer=keys.PrivateKey(MINER.key), task_id=1, model_commitment=commitment,
        train_bps=trained.train_bps, test_bps=test_bps, release_digest=release.digest,
    ).block
    encoded = rlp.encode(pole_block)

    verify_times = []
    for _ in range(args.repeats):
        verifier_chain, book = node()
        for blob in (train_blob, test_blob, spec_blob):
            book.blobs.put(blob)
        verifier_chain.import_block(task_block)
        book.add_release(
            release,
            replace(best_open_task(state_at(verifier_chain.chaindb.db, parent)), anchor=anchored),
        )
        book.reveal_model(model_blob, miner, parent.hash)
        block = rlp.decode(encoded, sedes=verifier_chain.get_vm_class_for_block_number(2).get_block_class())
        start = time.perf_counter()
        verifier_chain.import_block(block)
        verify_times.append(time.perf_counter() - start)
        assert verifier_chain.get_canonical_head() == pole_block.header
    verify_s = statistics.median(verify_times)
    print(f"train {train_s:.3f} s to {trained.train_bps} bps ({trained.epochs} epochs); verify {verify_s * 1000:.1f} ms", flush=True)
    report(
        "verify_vs_train",
        {
            "train_s": round(train_s, 4),
            "verify_s": round(verify_s, 4),
            "ratio": round(verify_s / train_s, 4),
            "train_bps": trained.train_bps,
            "test_bps": test_bps,
            "epochs": trained.epochs,
            "target_bps": args.target_bps,
            "model": "mlp",
            "dataset": "digits",
        },
    )


if __name__ == "__main__":
    main()
