"""Encrypted tasks: the protocol half of docs/IPFE.md (miner/ipfe/ is the cryptographic core).

    data node   posts the task with dataset digest = keccak(EncryptedTrainingSet blob):
                the IPFE master public key, one ciphertext per training sample, the labels
                in clear, and keccak of the clear training set (revealed with the release)
    miner       after the task's anchor exists: KeyRequest(task, anchor, miner), signed by
                the miner, to its node (pole_requestKeys)
    data node   polls its node for requests (pole_keyRequests), derives the miner's SML rows
                itself from (anchor, miner, its model's input shape: dense or local SML),
                checks the anchor and the bond, answers with a KeyBundle(task, anchor, miner,
                input shape, one key per row) signed by the task's poster (pole_putKeys)
    miner       fetches its bundle (pole_getKeys), checks it (poster, task, anchor, miner,
                rows == its own SML), decrypts relu(S x) of every sample and trains on it
    release     the data node uploads the clear training set before it signs the release;
                consensus resolves the encrypted container to it (`resolve_training_set`)
                and verifies exactly as for a clear task

Image models work as flat ones: the local SML (miner/sml.py) is a sparse ternary matrix too,
so its rows get keys like the dense SML's, and decrypting a row sums only its 9c non-zero
taps. A bundle names the rows by the model's input shape instead of carrying them.

Labels stay in clear: a miner needs them to train, an IPFE key for a label would reveal it
anyway, and labels alone say only how many samples each class has. The features are what
nobody can use before the anchor exists.

The training code and the integer evaluator take (Dataset, SML) and call `sml.apply_int`;
a miner of an encrypted task has relu(S x) but not x, so `decrypted_training_set` gives them
an `IndexedTrainingSet` (features carry each sample's index, labels are real) and a
`DecryptedSML` that looks the decrypted rows up by that index: both run unchanged.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

import numpy as np
import rlp
from eth_utils import encode_hex, keccak
from rlp.sedes import Binary, CountableList, big_endian_int

from miner.datasets import (
    MAX_CLASSES,
    MAX_FEATURE_VALUE,
    Dataset,
    DatasetFormatError,
    decode_dataset,
    encode_dataset,
)
from miner.ipfe import (
    CiphertextBatch,
    FunctionalKeys,
    IPFEError,
    IPFEFormatError,
    MasterPublicKey,
    MasterSecretKey,
    check_task,
    decrypt_sml_inputs,
    encrypt_dataset,
    get_group,
    setup,
    sml_keys,
    table_for,
)
from miner.ipfe.scheme import DIGEST_SIZE, SCALAR_SIZE
from miner.messages import (
    MESSAGE_VERSION,
    MessageError,
    _ADDRESS,
    _HASH32,
    _SIGNATURE,
    _SignedMessage,
    decode_typed,
)
from miner.sml import LOCAL_SML_EXPANSIONS, SML, SMLShapeError, model_sml, sml_layout

ENCRYPTED_MAGIC = b"PLET"
ENCRYPTED_VERSION = 1
#: magic, version, clear-set digest, num_classes, image shape (c, h, w or zeros), N
_HEADER = struct.Struct(">4sB32sH3HI")
_U32 = struct.Struct(">I")
_BATCH_HEAD = struct.Struct(">4sBBII32s")  # miner.ipfe wire format: IPCB | 1 | group | N | n | digest
_ELEMENT = 33

KEY_REQUEST_TYPE = 0x03
KEY_BUNDLE_TYPE = 0x04
#: KeyBundle format 2 carries no rows (every party derives them): format 1 carried them.
KEY_BUNDLE_VERSION = 2
MAX_KEY_REQUEST_SIZE = 512
MAX_ENCRYPTED_FEATURES = 1024
#: The most rows an encrypted task's SML has: the local SML's E = 8 maps per feature (the
#: dense SML has 2 per feature).
MAX_BUNDLE_KEYS = max(LOCAL_SML_EXPANSIONS) * MAX_ENCRYPTED_FEATURES
#: A bundle holds one 32-byte scalar per SML row and fixed fields that a request's limit
#: covers: 256.5 KiB for the widest task (8192 rows); digits' dense SML 4.3 KB.
MAX_KEY_BUNDLE_SIZE = MAX_BUNDLE_KEYS * SCALAR_SIZE + MAX_KEY_REQUEST_SIZE
_MAX_SHAPE_VALUE = 1 << 16


class EncryptedTaskError(RuntimeError):
    """An encrypted task's keys cannot be requested, served or used; the message says why."""


class EncryptedFormatError(DatasetFormatError):
    """An encrypted training set's bytes break the format (a kind of malformed dataset)."""


class TrainingSetUnavailable(LookupError):
    """A blob the training set resolves to is not on this node (yet)."""


# --------------------------------------------------------------------------------------
# The encrypted training set: what an encrypted task's dataset digest names
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EncryptedTrainingSet:
    """PLET | 1 | clear digest | num_classes | c, h, w | N | N labels | u32 + master public
    key | u32 + ciphertext batch. The batch's header is checked on decoding (N, n, master key
    digest, length); its points are decoded only by `ciphertexts()` (the miner's side)."""

    clear_digest: bytes
    num_classes: int
    image_shape: Optional[tuple[int, int, int]]
    labels: np.ndarray  # uint8 (N,), read-only
    mpk: MasterPublicKey
    batch_bytes: bytes

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def d(self) -> int:
        return self.mpk.n

    def encode(self) -> bytes:
        c, h, w = self.image_shape or (0, 0, 0)
        mpk = self.mpk.to_bytes()
        return (
            _HEADER.pack(ENCRYPTED_MAGIC, ENCRYPTED_VERSION, self.clear_digest, self.num_classes,
                         c, h, w, self.n)
            + self.labels.astype(np.uint8).tobytes()
            + _U32.pack(len(mpk)) + mpk
            + _U32.pack(len(self.batch_bytes)) + self.batch_bytes
        )

    def ciphertexts(self) -> CiphertextBatch:
        """The decoded ciphertexts (every point checked); EncryptedFormatError otherwise."""
        try:
            return CiphertextBatch.from_bytes(self.batch_bytes)
        except IPFEFormatError as error:
            raise EncryptedFormatError(f"encrypted training set: {error}") from None

    def check_clear(self, clear: Dataset) -> None:
        """The clear training set revealed with the release must be the one committed to:
        same digest (checked by whoever looked it up), same size, classes and labels."""
        if keccak(encode_dataset(clear)) != self.clear_digest:
            raise EncryptedFormatError("clear training set does not hash to the committed digest")
        if (clear.n, clear.d, clear.num_classes) != (self.n, self.d, self.num_classes):
            raise EncryptedFormatError(
                f"clear training set has {clear.n} x {clear.d} / {clear.num_classes} classes, "
                f"the encrypted one {self.n} x {self.d} / {self.num_classes}"
            )
        if not np.array_equal(clear.labels, self.labels):
            raise EncryptedFormatError("clear training set's labels differ from the encrypted one's")


def is_encrypted_training_set(blob: bytes) -> bool:
    return bytes(blob[:4]) == ENCRYPTED_MAGIC


def decode_encrypted_training_set(data: bytes) -> EncryptedTrainingSet:
    """Parse an encrypted training set; EncryptedFormatError on any deviation."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise EncryptedFormatError(f"encrypted training set truncated: {len(data)} bytes")
    magic, version, clear_digest, num_classes, c, h, w, count = _HEADER.unpack_from(data)
    if magic != ENCRYPTED_MAGIC:
        raise EncryptedFormatError(f"bad magic {magic!r}, expected {ENCRYPTED_MAGIC!r}")
    if version != ENCRYPTED_VERSION:
        raise EncryptedFormatError(f"unsupported encrypted training set version {version}")
    if not 2 <= num_classes <= MAX_CLASSES:
        raise EncryptedFormatError(f"num_classes {num_classes} outside 2..{MAX_CLASSES}")
    if (c, h, w) != (0, 0, 0) and min(c, h, w) == 0:
        raise EncryptedFormatError(f"image shape {(c, h, w)} must be all zero or all positive")
    offset = _HEADER.size
    if len(data) < offset + count:
        raise EncryptedFormatError("encrypted training set truncated in its labels")
    labels = np.frombuffer(data, dtype=np.uint8, count=count, offset=offset).copy()
    if count and int(labels.max()) >= num_classes:
        raise EncryptedFormatError(f"labels must be 0..{num_classes - 1}, got {int(labels.max())}")
    labels.setflags(write=False)
    offset += count
    mpk_bytes, offset = _sized(data, offset, "master public key")
    batch_bytes, offset = _sized(data, offset, "ciphertext batch")
    if offset != len(data):
        raise EncryptedFormatError(f"{len(data) - offset} trailing bytes after the encrypted training set")
    try:
        mpk = MasterPublicKey.from_bytes(mpk_bytes)
    except IPFEFormatError as error:
        raise EncryptedFormatError(f"encrypted training set: {error}") from None
    image_shape = None if (c, h, w) == (0, 0, 0) else (c, h, w)
    if image_shape is not None and c * h * w != mpk.n:
        raise EncryptedFormatError(f"image shape {image_shape} does not have {mpk.n} values")
    _check_batch_header(batch_bytes, count, mpk)
    return EncryptedTrainingSet(clear_digest, num_classes, image_shape, labels, mpk, batch_bytes)


def _sized(data: bytes, offset: int, what: str) -> tuple[bytes, int]:
    if len(data) < offset + _U32.size:
        raise EncryptedFormatError(f"encrypted training set truncated before its {what}")
    (size,) = _U32.unpack_from(data, offset)
    offset += _U32.size
    if len(data) < offset + size:
        raise EncryptedFormatError(f"encrypted training set truncated in its {what}")
    return data[offset: offset + size], offset + size


def _check_batch_header(batch: bytes, count: int, mpk: MasterPublicKey) -> None:
    if len(batch) < _BATCH_HEAD.size:
        raise EncryptedFormatError("ciphertext batch truncated")
    magic, version, _group, n_ct, n, digest = _BATCH_HEAD.unpack_from(batch)
    if magic != b"IPCB" or version != 1:
        raise EncryptedFormatError("the ciphertexts are not an IPFE ciphertext batch")
    if n_ct != count:
        raise EncryptedFormatError(f"{n_ct} ciphertexts for {count} labels")
    if n != mpk.n or digest != mpk.digest:
        raise EncryptedFormatError("the ciphertexts are not under the task's master public key")
    expected = _BATCH_HEAD.size + count * (n + 1) * _ELEMENT
    if len(batch) != expected:
        raise EncryptedFormatError(f"ciphertext batch must be {expected} bytes, got {len(batch)}")


def decode_training_blob(data: bytes) -> Dataset | EncryptedTrainingSet:
    """What a task's dataset digest names: a clear training set or an encrypted one."""
    if is_encrypted_training_set(data):
        return decode_encrypted_training_set(data)
    return decode_dataset(data)


def resolve_training_set(digest: bytes, lookup: Callable[[bytes], Optional[bytes]]) -> Dataset:
    """The clear training set a task's dataset digest stands for (consensus's view): the
    blob itself, or for an encrypted task the clear set it commits to, revealed with the
    release. TrainingSetUnavailable if a blob is missing; DatasetFormatError if malformed."""
    blob = lookup(digest)
    if blob is None:
        raise TrainingSetUnavailable(f"training set {digest.hex()} is not available")
    if not is_encrypted_training_set(blob):
        return decode_dataset(blob)
    encrypted = decode_encrypted_training_set(blob)
    clear_blob = lookup(encrypted.clear_digest)
    if clear_blob is None:
        raise TrainingSetUnavailable(
            f"clear training set {encrypted.clear_digest.hex()} of encrypted training set "
            f"{digest.hex()} is not available (the data node reveals it with the release)"
        )
    clear = decode_dataset(clear_blob)
    encrypted.check_clear(clear)
    return clear


def clear_digest_of(blob: Optional[bytes]) -> Optional[bytes]:
    """The clear training set's digest an encrypted training set names (None otherwise):
    what a node keeps and fetches beside the task's dataset blob."""
    if blob is None or not is_encrypted_training_set(blob) or len(blob) < _HEADER.size:
        return None
    return bytes(blob[5:37])


def check_encryptable(d: int) -> None:
    """Refuse a task whose inner products exceed the discrete-log bound, or wider than the
    key bundle and the ciphertexts are sized for."""
    check_task(d, MAX_FEATURE_VALUE)
    if d > MAX_ENCRYPTED_FEATURES:
        raise EncryptedTaskError(
            f"{d} features: encrypted tasks take at most {MAX_ENCRYPTED_FEATURES} (a miner's "
            f"key bundle is sized for {MAX_BUNDLE_KEYS} SML rows)"
        )


def encrypt_training_set(train: Dataset, *, progress: bool = False, workers: int = 1
                         ) -> tuple[EncryptedTrainingSet, MasterSecretKey]:
    """A fresh master key for this task (never reused: keys accumulate, docs/IPFE.md) and
    the encrypted training set."""
    check_encryptable(train.d)
    mpk, msk = setup(train.d)
    batch = encrypt_dataset(msk, train.features, progress=progress, workers=workers)
    labels = np.array(train.labels, dtype=np.uint8)
    labels.setflags(write=False)
    encrypted = EncryptedTrainingSet(
        clear_digest=keccak(encode_dataset(train)),
        num_classes=train.num_classes,
        image_shape=train.image_shape,
        labels=labels,
        mpk=mpk,
        batch_bytes=batch.to_bytes(),
    )
    return encrypted, msk


# --------------------------------------------------------------------------------------
# Key requests and key bundles: signed messages (docs/MESSAGES.md)
# --------------------------------------------------------------------------------------


class _KeyMessage(_SignedMessage):
    """A signed message with its own size limit (miner.messages.decode is for the two
    messages of a height, 8 KiB at most)."""

    MAX_SIZE: ClassVar[int]

    @classmethod
    def decode(cls, data: bytes):
        """miner.messages' one decoder, with this message's own type and size limit."""
        return decode_typed(data, {cls.TYPE: cls}, cls.MAX_SIZE)


class KeyRequest(_KeyMessage, rlp.Serializable):
    """A miner asks for the functional keys of its own SML rows for (task, anchor). It
    names no rows: the data node derives them from the anchor and the signer's address."""

    TYPE = KEY_REQUEST_TYPE
    NAME = "KeyRequest"
    MAX_SIZE = MAX_KEY_REQUEST_SIZE
    _signer_field = "miner"

    fields = (
        ("version", big_endian_int),
        ("chain_id", big_endian_int),
        ("task_id", big_endian_int),
        ("anchor_hash", _HASH32),
        ("miner", _ADDRESS),
        ("signature", _SIGNATURE),
    )
    miner: bytes

    @classmethod
    def sign(cls, *, chain_id: int, task_id: int, anchor_hash: bytes, private_key) -> "KeyRequest":
        return cls._signed(private_key, version=MESSAGE_VERSION, chain_id=chain_id,
                           task_id=task_id, anchor_hash=anchor_hash)


class KeyBundle(_KeyMessage, rlp.Serializable):
    """The data node's answer: the functional keys of `miner`'s SML rows for (task, anchor),
    signed by the task's poster. It carries one scalar per row and says which SML the rows
    are (the model's `input_shape` over `features`, `model_sml`), not the rows themselves:
    every party derives them from the anchor and the miner, so the widest task's bundle is
    256.5 KiB instead of 8.6 MB, and the same bytes go over RPC and gossip."""

    TYPE = KEY_BUNDLE_TYPE
    NAME = "KeyBundle"
    VERSION = KEY_BUNDLE_VERSION
    MAX_SIZE = MAX_KEY_BUNDLE_SIZE
    _signer_field = "poster"

    fields = (
        ("version", big_endian_int),
        ("chain_id", big_endian_int),
        ("task_id", big_endian_int),
        ("anchor_hash", _HASH32),
        ("miner", _ADDRESS),
        ("input_shape", CountableList(big_endian_int, max_length=3)),
        ("features", big_endian_int),
        ("mpk_digest", Binary.fixed_length(DIGEST_SIZE)),
        ("scalars", Binary(max_length=MAX_BUNDLE_KEYS * SCALAR_SIZE)),
        ("poster", _ADDRESS),
        ("signature", _SIGNATURE),
    )
    miner: bytes
    input_shape: tuple[int, ...]
    features: int
    mpk_digest: bytes
    scalars: bytes
    poster: bytes

    @classmethod
    def sign(cls, *, chain_id: int, task_id: int, anchor_hash: bytes, miner: bytes,
             input_shape: tuple[int, ...], keys: FunctionalKeys, private_key) -> "KeyBundle":
        """Sign `keys`, which must be for the rows of model_sml(anchor, miner, input_shape)."""
        return cls._signed(
            private_key, version=KEY_BUNDLE_VERSION, chain_id=chain_id, task_id=task_id,
            anchor_hash=anchor_hash, miner=miner, input_shape=tuple(input_shape),
            features=keys.n, mpk_digest=keys.mpk_digest,
            scalars=b"".join(value.to_bytes(SCALAR_SIZE, "big") for value in keys.sk),
        )

    @classmethod
    def _check_fields(cls, f: dict[str, object]) -> None:
        """Cheap and complete: the shape is one an SML of `features` gives, there is one
        scalar per row of it and each is below the group order. Only `functional_keys`
        derives the rows (a second for the widest task)."""
        from miner.messages import _require_length

        _require_length("miner", f["miner"], 20)
        features, shape = f["features"], tuple(f["input_shape"])
        if not isinstance(features, int) or not 1 <= features <= MAX_ENCRYPTED_FEATURES:
            raise MessageError(f"KeyBundle features {features!r} outside 1..{MAX_ENCRYPTED_FEATURES}")
        if not shape or not all(isinstance(v, int) and 1 <= v <= _MAX_SHAPE_VALUE for v in shape):
            raise MessageError(f"KeyBundle input_shape {shape!r} is not a model input shape")
        try:
            sml_layout(shape, features)
        except SMLShapeError as error:
            raise MessageError(f"KeyBundle input_shape: {error}") from None
        rows = int(np.prod(shape))  # the SML's outputs: its rows, dense or local
        scalars = f["scalars"]
        if not isinstance(scalars, bytes) or len(scalars) != rows * SCALAR_SIZE:
            raise MessageError(f"KeyBundle must carry {rows} scalars of {SCALAR_SIZE} bytes for "
                               f"its SML of {rows} rows")
        order = get_group().order
        if any(value >= order for value in _split_scalars(scalars)):
            raise MessageError("KeyBundle scalars must be below the group order")

    def sml(self) -> SML:
        """The SML whose rows the keys are for."""
        return model_sml(self.anchor_hash, self.miner, tuple(self.input_shape), self.features)

    def functional_keys(self) -> FunctionalKeys:
        """The keys with their rows, derived here."""
        try:
            return FunctionalKeys(get_group(), self.mpk_digest, self.sml().matrix,
                                  _split_scalars(self.scalars))
        except IPFEFormatError as error:
            raise MessageError(f"KeyBundle keys: {error}") from None


def _split_scalars(data: bytes) -> tuple[int, ...]:
    return tuple(int.from_bytes(data[i: i + SCALAR_SIZE], "big") for i in range(0, len(data), SCALAR_SIZE))


def bundle_for(msk: MasterSecretKey, request: KeyRequest, input_shape: tuple[int, ...], *,
               private_key) -> KeyBundle:
    """The data node's answer to a checked request: keys for the rows it derives itself from
    the request's anchor and signer and its own task's model input (a request carries no
    rows). IPFEError if the rows exceed the discrete-log bound; SMLShapeError if no SML of
    the task's features gives `input_shape`."""
    keys = sml_keys(msk, request.anchor_hash, request.miner, tuple(input_shape), MAX_FEATURE_VALUE)
    return KeyBundle.sign(chain_id=request.chain_id, task_id=request.task_id,
                          anchor_hash=request.anchor_hash, miner=request.miner,
                          input_shape=input_shape, keys=keys, private_key=private_key)


def check_bundle(bundle: KeyBundle, *, chain_id: int, task_id: int, anchor_hash: bytes,
                 miner: bytes, poster: bytes, encrypted: EncryptedTrainingSet, sml: SML
                 ) -> FunctionalKeys:
    """The miner's check of a bundle before decrypting: signed by the task's poster, bound to
    this chain, task, anchor and miner, keys for the task's master key and for exactly this
    miner's SML rows. MessageError otherwise."""
    bundle.verify(chain_id)
    if bundle.poster != poster:
        raise MessageError(f"KeyBundle signed by {encode_hex(bundle.poster)}, not the task's poster {encode_hex(poster)}")
    if (bundle.task_id, bundle.anchor_hash, bundle.miner) != (task_id, anchor_hash, miner):
        raise MessageError(
            f"KeyBundle is for task {bundle.task_id} at {encode_hex(bundle.anchor_hash)[:10]}… for "
            f"{encode_hex(bundle.miner)}, not task {task_id} at {encode_hex(anchor_hash)[:10]}… for {encode_hex(miner)}"
        )
    if bundle.mpk_digest != encrypted.mpk.digest:
        raise MessageError("KeyBundle keys are for another master public key than the task's")
    keys = bundle.functional_keys()
    if keys.rows.shape != sml.matrix.shape or not np.array_equal(keys.rows, sml.matrix):
        raise MessageError(f"KeyBundle keys are for the SML of a model taking {tuple(bundle.input_shape)}, "
                           "not this miner's SML for this task")
    return keys


# --------------------------------------------------------------------------------------
# Training on decrypted projections
# --------------------------------------------------------------------------------------

_INDEX_BYTES = 3  # N <= 200,000 < 256**3


def _index_features(count: int, d: int) -> np.ndarray:
    columns = min(d, _INDEX_BYTES)
    if count > 256 ** columns:
        raise EncryptedTaskError(f"{count} samples cannot be indexed by {d} features")
    index = np.arange(count, dtype=np.int64)
    features = np.zeros((count, d), dtype=np.int64)
    for j in range(columns):
        features[:, j] = (index >> (8 * j)) & 0xFF
    return features


def _index_of(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.int64)
    columns = min(x.shape[1], _INDEX_BYTES)
    return sum(x[:, j] << (8 * j) for j in range(columns))


@dataclass(frozen=True, eq=False)
class DecryptedSML:
    """The miner's SML over an IndexedTrainingSet: `apply_int` returns the decrypted
    relu(S x) of the samples whose indices the features carry (same matrix and shift as the
    real SML, so the exported integer model is the one consensus evaluates)."""

    sml: SML
    inputs: np.ndarray  # int64 (N, out_dim) = relu(S x), decrypted

    @property
    def matrix(self) -> np.ndarray:
        return self.sml.matrix

    @property
    def output_shift(self) -> int:
        return self.sml.output_shift

    @property
    def input_dim(self) -> int:
        return self.sml.input_dim

    @property
    def out_dim(self) -> int:
        return self.sml.out_dim

    @property
    def macs_per_sample(self) -> int:
        return self.sml.macs_per_sample

    def matrix_digest(self) -> bytes:
        return self.sml.matrix_digest()

    def apply_int(self, features: np.ndarray) -> np.ndarray:
        return self.inputs[_index_of(features)]

    def apply_float(self, features: np.ndarray) -> np.ndarray:
        return np.ldexp(self.apply_int(features).astype(np.float32), -self.output_shift)


def decrypted_training_set(encrypted: EncryptedTrainingSet, keys: FunctionalKeys, sml: SML, *,
                           progress: bool = False) -> tuple[Dataset, DecryptedSML]:
    """Decrypt relu(S x) for every sample (table, decryption: progress bars) and wrap it so
    training and the integer evaluator run unchanged: (IndexedTrainingSet, DecryptedSML)."""
    batch = encrypted.ciphertexts()
    table = table_for(batch.group, encrypted.d, progress=progress)
    try:
        inputs = decrypt_sml_inputs(batch, keys, table, progress=progress)
    except IPFEError as error:
        raise EncryptedTaskError(f"cannot decrypt the training set: {error}") from None
    indexed = Dataset(
        features=_index_features(encrypted.n, encrypted.d),
        labels=encrypted.labels,
        num_classes=encrypted.num_classes,
        image_shape=encrypted.image_shape,
    )
    return indexed, DecryptedSML(sml, inputs)


