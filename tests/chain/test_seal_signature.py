"""Only the miner can use its seal: a PoLe block is signed by its coinbase (issue #7).

The signature is an EIP-2098 compact signature over the header with both signature fields
zero, stored in Prague's parent_beacon_block_root (r) and requests_hash (yParity | s). Every
check here is on the header alone, so a node refuses a re-wrapped seal before it executes
anything, and a header-first sync refuses it without any state.
"""
import pytest
import rlp
from eth.vm.forks.cancun.constants import BEACON_ROOTS_ADDRESS, HISTORY_BUFFER_LENGTH
from eth_keys import keys
from eth_keys.constants import SECPK1_N
from eth_keys.exceptions import BadSignature
from eth_utils import keccak

from pole_chain.chain.block_production import (
    build_block,
    build_pole_block,
    next_timestamp,
    produce_dev_block,
    produce_pole_block,
    sign_pole_block,
    solve_idle_block,
)
from vm_hooks.consensus import state_at
from vm_hooks.seal import Seal, header_fields, read_seal, seal_signer, signing_hash
from vm_hooks.seal_errors import SealFormatError, SignatureFormatError, SignerMismatchError
from vm_hooks.vm import PoLePragueVM, UnexpectedRequestsError

from .conftest import address_of, miner_key, new_chain, nonce_of, replay, sign

MINER_KEY = miner_key(b"signed seal")
MINER = address_of(MINER_KEY)
THIEF_KEY = miner_key(b"seal thief")
SEAL = dict(task_id=1, model_commitment=keccak(b"model"), train_bps=9_500, test_bps=9_000,
            release_digest=keccak(b"release"))


def honest_block(task_chain):
    return produce_pole_block(task_chain.chain, [], signer=MINER_KEY, **SEAL).block


def unsigned_wrapping(task_chain, honest, *, transactions=(), timestamp=None):
    """The honest block's seal, built again on its parent as anyone who saw it could."""
    parent = task_chain.chain.get_block_header_by_hash(honest.header.parent_hash)
    return build_pole_block(
        task_chain.chain, list(transactions), coinbase=MINER, parent=parent,
        timestamp=timestamp or honest.header.timestamp, **SEAL,
    ).block


def with_signature(block, r: int, y_parity_and_s: int):
    return block.copy(header=block.header.copy(
        parent_beacon_block_root=r.to_bytes(32, "big"),
        requests_hash=y_parity_and_s.to_bytes(32, "big"),
    ))


def compact(header) -> tuple:
    """(r, yParity, s) of a header's signature fields."""
    r = int.from_bytes(header.parent_beacon_block_root, "big")
    word = int.from_bytes(header.requests_hash, "big")
    return r, word >> 255, word & ((1 << 255) - 1)


def signature_words(header) -> tuple:
    r, y_parity, s = compact(header)
    return r, y_parity << 255 | s


def refused_on_import_and_by_header(task_chain, block, error):
    importer = replay(task_chain.blocks)
    head = importer.get_canonical_head()
    with pytest.raises(error):
        importer.validate_seal(block.header)  # the header alone
    with pytest.raises(error):
        importer.import_block(block)
    assert importer.get_canonical_head() == head


def test_a_signed_pole_block_carries_an_eip2098_signature_by_its_coinbase(task_chain):
    block = honest_block(task_chain)
    r, y_parity, s = compact(block.header)
    assert 0 < s <= SECPK1_N // 2  # low s, so the top bit is free for yParity
    signature = keys.Signature(vrs=(y_parity, r, s))
    assert signature.recover_public_key_from_msg_hash(signing_hash(block.header)) == MINER_KEY.public_key
    assert seal_signer(block.header) == MINER == block.header.coinbase
    unsigned = block.header.copy(parent_beacon_block_root=bytes(32), requests_hash=bytes(32))
    assert signing_hash(block.header) == keccak(rlp.encode(unsigned))
    importer = replay(task_chain.blocks)
    importer.import_block(block)
    assert importer.get_canonical_head() == block.header  # import kept requests_hash as signed


@pytest.mark.parametrize("change", ["timestamp", "transactions"])
def test_a_rewrapped_seal_with_the_old_signature_is_refused(task_chain, change):
    honest = honest_block(task_chain)
    if change == "timestamp":
        copy = unsigned_wrapping(task_chain, honest, timestamp=honest.header.timestamp + 1)
    else:
        chain = task_chain.chain
        transfer = sign(chain, {"to": b"\x55" * 20, "value": 1, "nonce": nonce_of(chain, 0)})
        copy = unsigned_wrapping(task_chain, honest, transactions=[transfer])
        assert copy.transactions == (transfer,)
    assert read_seal(copy.header).seal == read_seal(honest.header).seal  # the same seal
    rewrapped = with_signature(copy, *signature_words(honest.header))
    refused_on_import_and_by_header(task_chain, rewrapped, SignerMismatchError)


def test_a_rewrapped_seal_signed_by_another_key_is_refused(task_chain):
    honest = honest_block(task_chain)
    copy = unsigned_wrapping(task_chain, honest, timestamp=honest.header.timestamp + 1)
    stolen = sign_pole_block(copy, THIEF_KEY)
    assert seal_signer(stolen.header) == address_of(THIEF_KEY)
    refused_on_import_and_by_header(task_chain, stolen, SignerMismatchError)


@pytest.mark.parametrize(
    "name, error",
    [
        ("unsigned", SignatureFormatError),
        ("high s", SignatureFormatError),
        ("s zero", SignatureFormatError),
        ("r zero", SignatureFormatError),
        ("r not below n", SignatureFormatError),
        ("r on no curve point", SignatureFormatError),
        ("other recovery id", SignerMismatchError),
    ],
)
def test_a_malformed_signature_is_refused(task_chain, name, error):
    honest = honest_block(task_chain)
    r, y_parity, s = compact(honest.header)
    no_point = next(x for x in range(5, 100) if _recovers_nothing(x, s, honest.header))
    words = {
        "unsigned": (0, 0),
        # The same key's second form (r, n - s) almost never fits below the parity bit; any
        # s above n/2 that does is refused, so a signature has one encoding.
        "high s": (r, y_parity << 255 | (SECPK1_N // 2 + 1)),
        "s zero": (r, y_parity << 255),
        "r zero": (0, y_parity << 255 | s),
        "r not below n": (SECPK1_N + 1, y_parity << 255 | s),
        "r on no curve point": (no_point, y_parity << 255 | s),
        "other recovery id": (r, (1 - y_parity) << 255 | s),
    }[name]
    refused_on_import_and_by_header(task_chain, with_signature(honest, *words), error)


def _recovers_nothing(r: int, s: int, header) -> bool:
    try:
        keys.Signature(vrs=(0, r, s)).recover_public_key_from_msg_hash(signing_hash(header))
    except BadSignature:  # no curve point has this x
        return True
    return False


def with_field(block, field: str):
    return block.copy(header=block.header.copy(**{field: b"\x01" * 32}))


@pytest.mark.parametrize("field", ["parent_beacon_block_root", "requests_hash"])
def test_idle_blocks_with_a_signature_field_are_refused(field):
    chain = new_chain()
    produced = build_block(chain, [], header_fields(Seal.idle(2), miner=MINER), next_timestamp(chain, None))
    produced.block = with_field(produced.block, field)
    block = solve_idle_block(produced, 2).block  # real proof of work: only the field is wrong
    with pytest.raises(SealFormatError, match="must be zero .only PoLe blocks are signed."):
        new_chain().import_block(block)


@pytest.mark.parametrize("field", ["parent_beacon_block_root", "requests_hash"])
def test_dev_blocks_with_a_signature_field_are_refused(field):
    chain = new_chain(dev=True)
    built = build_block(chain, [], header_fields(Seal.dev(), miner=MINER), next_timestamp(chain, None))
    block = with_field(built.block, field)
    with pytest.raises(SealFormatError, match="must be zero .only PoLe blocks are signed."):
        new_chain(dev=True).import_block(block)
    honest = produce_dev_block(new_chain(dev=True), []).block
    assert honest.header.parent_beacon_block_root == honest.header.requests_hash == bytes(32)


def test_the_signature_in_parent_beacon_block_root_never_reaches_the_state(task_chain):
    """Cancun stores the root only where the EIP-4788 contract's code is; it is not in
    genesis, and its keyless deployment is an unprotected (pre-EIP-155) transaction, which
    this chain refuses (test_replay_and_settlement's chain-id tests)."""
    block = honest_block(task_chain)
    assert block.header.parent_beacon_block_root != bytes(32)
    # The state root was computed with both fields zero; the import ran Cancun's
    # block_preprocessing with the signature's r as the root and reached the same state.
    importer = replay(task_chain.blocks + [block])
    state = state_at(importer.chaindb.db, importer.get_canonical_head())
    assert state.get_code(BEACON_ROOTS_ADDRESS) == b""
    slot = block.header.timestamp % HISTORY_BUFFER_LENGTH
    assert state.get_storage(BEACON_ROOTS_ADDRESS, slot) == 0
    assert state.get_storage(BEACON_ROOTS_ADDRESS, slot + HISTORY_BUFFER_LENGTH) == 0


def test_requests_hash_is_kept_and_a_block_with_requests_is_refused(task_chain):
    block = honest_block(task_chain)
    block.block_requests[:] = [b"\x00"]  # Prague's empty deposit list: no request
    assert PoLePragueVM.compute_requests_hash(block) is block
    block.block_requests[:] = [b"\x00", b"\x01" + b"\x22" * 76]  # a withdrawal request
    with pytest.raises(UnexpectedRequestsError, match=r"1 EIP-7685 request\(s\) of type\(s\) \[1\]"):
        PoLePragueVM.compute_requests_hash(block)
