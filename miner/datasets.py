"""Datasets: the in-memory form, the canonical byte encoding, built-in and user datasets.

A dataset is what a data node posts (training set) or keeps secret until the release (test set).
Features are integers 0..255 (the data node quantises its raw features before posting), labels
are class indices 0..num_classes-1. The canonical encoding is what gets hashed on chain:

    offset  size   field
    0       4      magic b"PLDS"
    4       1      version (1)
    5       4      n, number of samples            u32 big-endian, 1..MAX_SAMPLES
    9       4      d, features per sample          u32 big-endian, 1..MAX_FEATURES
    13      2      num_classes                     u16 big-endian, 2..256
    15      6      image shape (c, h, w)           3 x u16 big-endian, all zero if not an image,
                                                   else all >= 1 with c*h*w == d
    21      32     salt                            zero for training sets, random for test sets
    53      n*d    features, row-major             one unsigned byte each (0..255)
    53+n*d  n      labels                          one unsigned byte each (< num_classes)

Nothing else: decoding rejects truncated input and trailing bytes, so each dataset has exactly
one encoding and `dataset_digest` is a function of the dataset alone.

Quantising raw float features (built-in datasets, user files) uses numpy floats; that is the
data node's business and not consensus-critical. Only the integer dataset that results is.
"""

from __future__ import annotations

import csv
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from eth_utils import keccak

DATASET_MAGIC = b"PLDS"
DATASET_VERSION = 1
SALT_SIZE = 32
ZERO_SALT = bytes(SALT_SIZE)
MAX_SAMPLES = 200_000
MAX_FEATURES = 4096
MAX_CELLS = 1 << 26  # n * d, so an encoding stays under ~64 MiB
MAX_CLASSES = 256
MAX_FEATURE_VALUE = 255

_HEADER = struct.Struct(">4sBIIH3H32s")  # magic, version, n, d, num_classes, c, h, w, salt
HEADER_SIZE = _HEADER.size  # 53


class DatasetFormatError(ValueError):
    """A dataset (in memory, encoded, or in a user file) breaks the format rules."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """n samples of d integer features (0..255) with labels 0..num_classes-1.

    The arrays are copied and made read-only on construction. Compare datasets with
    `dataset_digest`, not `==`.
    """

    features: np.ndarray  # int16, shape (n, d), values 0..255
    labels: np.ndarray  # uint8, shape (n,)
    num_classes: int
    salt: bytes = ZERO_SALT
    image_shape: tuple[int, int, int] | None = None  # (channels, height, width), c*h*w == d

    def __post_init__(self) -> None:
        features = _as_int64(self.features, "features")
        labels = _as_int64(self.labels, "labels")
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", tuple(int(v) for v in self.image_shape))
        _check_dataset(self, features, labels)
        features = features.astype(np.int16)
        labels = labels.astype(np.uint8)
        features.setflags(write=False)
        labels.setflags(write=False)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "labels", labels)

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    @property
    def d(self) -> int:
        return int(self.features.shape[1])


def _as_int64(values, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise DatasetFormatError(f"{what} must be an integer array, got dtype {array.dtype}")
    return array.astype(np.int64)


def _check_dataset(ds: Dataset, features: np.ndarray, labels: np.ndarray) -> None:
    """Every rule of the format, on the in-memory form (called by the constructor)."""
    if features.ndim != 2:
        raise DatasetFormatError(f"features must be 2-D (n, d), got shape {features.shape}")
    n, d = features.shape
    if not 1 <= n <= MAX_SAMPLES:
        raise DatasetFormatError(f"number of samples {n} outside 1..{MAX_SAMPLES}")
    if not 1 <= d <= MAX_FEATURES:
        raise DatasetFormatError(f"number of features {d} outside 1..{MAX_FEATURES}")
    if n * d > MAX_CELLS:
        raise DatasetFormatError(f"n*d = {n * d} exceeds {MAX_CELLS}")
    if labels.shape != (n,):
        raise DatasetFormatError(f"labels shape {labels.shape} does not match n={n}")
    if isinstance(ds.num_classes, bool) or not isinstance(ds.num_classes, int):
        raise DatasetFormatError(f"num_classes must be an int, got {ds.num_classes!r}")
    if not 2 <= ds.num_classes <= MAX_CLASSES:
        raise DatasetFormatError(f"num_classes {ds.num_classes} outside 2..{MAX_CLASSES}")
    if not isinstance(ds.salt, bytes) or len(ds.salt) != SALT_SIZE:
        raise DatasetFormatError(f"salt must be {SALT_SIZE} bytes")
    if features.min() < 0 or features.max() > MAX_FEATURE_VALUE:
        raise DatasetFormatError(
            f"feature values must be 0..{MAX_FEATURE_VALUE}, "
            f"got {int(features.min())}..{int(features.max())}"
        )
    if labels.min() < 0 or labels.max() >= ds.num_classes:
        raise DatasetFormatError(
            f"labels must be 0..{ds.num_classes - 1}, got {int(labels.min())}..{int(labels.max())}"
        )
    if ds.image_shape is not None:
        if len(ds.image_shape) != 3 or min(ds.image_shape) < 1 or max(ds.image_shape) > 0xFFFF:
            raise DatasetFormatError(f"image shape {ds.image_shape} must be 3 sizes in 1..65535")
        c, h, w = ds.image_shape
        if c * h * w != d:
            raise DatasetFormatError(f"image shape {ds.image_shape} has {c * h * w} values, d={d}")


# --- canonical encoding -------------------------------------------------------------------


def encode_dataset(ds: Dataset) -> bytes:
    """The canonical bytes of a dataset (layout in the module docstring)."""
    c, h, w = ds.image_shape if ds.image_shape is not None else (0, 0, 0)
    header = _HEADER.pack(
        DATASET_MAGIC, DATASET_VERSION, ds.n, ds.d, ds.num_classes, c, h, w, ds.salt
    )
    return header + ds.features.astype(np.uint8).tobytes(order="C") + ds.labels.tobytes()


def decode_dataset(data: bytes) -> Dataset:
    """Parse canonical bytes; raise DatasetFormatError on any deviation from the format."""
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise DatasetFormatError(f"truncated header: {len(data)} bytes, need {HEADER_SIZE}")
    magic, version, n, d, num_classes, c, h, w, salt = _HEADER.unpack_from(data)
    if magic != DATASET_MAGIC:
        raise DatasetFormatError(f"bad magic {magic!r}, expected {DATASET_MAGIC!r}")
    if version != DATASET_VERSION:
        raise DatasetFormatError(f"unsupported dataset version {version}")
    if not 1 <= n <= MAX_SAMPLES:
        raise DatasetFormatError(f"number of samples {n} outside 1..{MAX_SAMPLES}")
    if not 1 <= d <= MAX_FEATURES:
        raise DatasetFormatError(f"number of features {d} outside 1..{MAX_FEATURES}")
    if n * d > MAX_CELLS:
        raise DatasetFormatError(f"n*d = {n * d} exceeds {MAX_CELLS}")
    if (c, h, w) == (0, 0, 0):
        image_shape = None
    elif min(c, h, w) == 0:
        raise DatasetFormatError(f"image shape {(c, h, w)} must be all zero or all positive")
    else:
        image_shape = (c, h, w)
    expected = HEADER_SIZE + n * d + n
    if len(data) < expected:
        raise DatasetFormatError(f"truncated dataset: {len(data)} bytes, expected {expected}")
    if len(data) > expected:
        raise DatasetFormatError(f"{len(data) - expected} trailing bytes after dataset")
    features = np.frombuffer(data, dtype=np.uint8, count=n * d, offset=HEADER_SIZE)
    labels = np.frombuffer(data, dtype=np.uint8, count=n, offset=HEADER_SIZE + n * d)
    return Dataset(
        features=features.reshape(n, d).astype(np.int16),
        labels=labels,
        num_classes=num_classes,
        salt=salt,
        image_shape=image_shape,
    )


def dataset_digest(ds: Dataset) -> bytes:
    """keccak256 of the canonical encoding: the on-chain dataset digest / test-set commitment."""
    return keccak(encode_dataset(ds))


# --- built-in datasets (scikit-learn's bundled files, no downloads) ------------------------


def quantize_features(x: np.ndarray) -> np.ndarray:
    """Per-feature min-max scaling of raw features to integers 0..255 (data-node side).

    A constant feature becomes 0. Rounding is numpy's round-half-to-even.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DatasetFormatError(f"features must be 2-D, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DatasetFormatError("features contain NaN or infinity")
    lo = x.min(axis=0)
    span = x.max(axis=0) - lo
    scaled = np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 0.0)
    return np.clip(np.rint(scaled * MAX_FEATURE_VALUE), 0, MAX_FEATURE_VALUE).astype(np.int16)


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = np.asarray(bunch.data).astype(np.int64)  # integers 0..16
    features = raw * MAX_FEATURE_VALUE // 16  # exact integer rescale to 0..255
    return Dataset(features, bunch.target, num_classes=10, image_shape=(1, 8, 8))


def _tabular(loader_name: str):
    def load() -> Dataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()
        labels = np.asarray(bunch.target)
        return Dataset(quantize_features(bunch.data), labels, num_classes=int(labels.max()) + 1)

    return load


_BUILTIN_LOADERS = {
    "digits": _load_digits,  # 1797 x 64 (8x8 images), 10 classes
    "breast_cancer": _tabular("load_breast_cancer"),  # 569 x 30, 2 classes
    "wine": _tabular("load_wine"),  # 178 x 13, 3 classes
    "iris": _tabular("load_iris"),  # 150 x 4, 3 classes
}
BUILTIN_DATASETS: tuple[str, ...] = tuple(_BUILTIN_LOADERS)
DEFAULT_DATASET = "digits"


def load_builtin(name: str = DEFAULT_DATASET) -> Dataset:
    """One of BUILTIN_DATASETS, quantised to 0..255, with a zero salt."""
    if name not in _BUILTIN_LOADERS:
        raise DatasetFormatError(f"unknown built-in dataset {name!r}; choose from {BUILTIN_DATASETS}")
    return _BUILTIN_LOADERS[name]()


# --- user datasets --------------------------------------------------------------------------


def load_user_dataset(
    path: str | Path,
    *,
    num_classes: int | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> Dataset:
    """A dataset from a .npz file (arrays X and y) or a .csv file (label in the last column,
    optional header row).

    Features that are already integers 0..255 are kept; any other numbers are quantised per
    feature to 0..255. Labels must be integers 0..255; num_classes defaults to max label + 1.
    An .npz X of shape (n, h, w) or (n, c, h, w) is flattened and sets the image shape.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        x, y = _read_npz(path)
    elif suffix == ".csv":
        x, y = _read_csv(path)
    else:
        raise DatasetFormatError(f"{path}: unsupported file type {suffix!r}; use .npz or .csv")
    if x.ndim == 3:
        image_shape = image_shape or (1, x.shape[1], x.shape[2])
    elif x.ndim == 4:
        image_shape = image_shape or tuple(x.shape[1:])
    elif x.ndim != 2:
        raise DatasetFormatError(f"{path}: X must have 2, 3 or 4 dimensions, got {x.shape}")
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x
    if x.shape[0] != y.shape[0]:
        raise DatasetFormatError(f"{path}: {x.shape[0]} samples but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise DatasetFormatError(f"{path}: no samples")
    labels = _integer_labels(y, path)
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if classes < 2:
        raise DatasetFormatError(f"{path}: need at least 2 classes, labels give {classes}")
    return Dataset(_integer_features(x, path), labels, num_classes=classes, image_shape=image_shape)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise DatasetFormatError(f"{path}: missing array(s) {sorted(missing)}; need X and y")
            return np.asarray(archive["X"]), np.asarray(archive["y"]).reshape(-1)
    except DatasetFormatError:
        raise
    except Exception as exc:  # zipfile/pickle/format errors from numpy
        raise DatasetFormatError(f"{path}: not a readable .npz file ({exc})") from exc


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and not _numeric_row(rows[0]):
        rows = rows[1:]  # header
    if not rows:
        raise DatasetFormatError(f"{path}: no data rows")
    width = len(rows[0])
    if width < 2:
        raise DatasetFormatError(f"{path}: need at least one feature column and a label column")
    for line, row in enumerate(rows, start=1):
        if len(row) != width:
            raise DatasetFormatError(f"{path}: data row {line} has {len(row)} columns, expected {width}")
        if not _numeric_row(row):
            raise DatasetFormatError(f"{path}: data row {line} has a non-numeric value")
    table = np.array([[float(cell) for cell in row] for row in rows], dtype=np.float64)
    return table[:, :-1], table[:, -1]


def _numeric_row(row: list[str]) -> bool:
    try:
        for cell in row:
            float(cell)
    except ValueError:
        return False
    return True


def _integer_labels(y: np.ndarray, path: Path) -> np.ndarray:
    if y.dtype.kind not in "iuf" or y.ndim != 1:
        raise DatasetFormatError(f"{path}: labels must be a 1-D numeric array")
    if not np.all(np.isfinite(y)) or not np.all(y == np.floor(y)):
        raise DatasetFormatError(f"{path}: labels must be integers")
    if y.min() < 0 or y.max() > MAX_CLASSES - 1:
        raise DatasetFormatError(f"{path}: labels must be in 0..{MAX_CLASSES - 1}")
    return y.astype(np.uint8)


def _integer_features(x: np.ndarray, path: Path) -> np.ndarray:
    if x.dtype.kind not in "iuf":
        raise DatasetFormatError(f"{path}: features must be numeric")
    if not np.all(np.isfinite(x)):
        raise DatasetFormatError(f"{path}: features contain NaN or infinity")
    if np.all(x == np.floor(x)) and x.min() >= 0 and x.max() <= MAX_FEATURE_VALUE:
        return x.astype(np.int16)
    return quantize_features(x)


# --- train/test split ----------------------------------------------------------------------


def split_dataset(
    ds: Dataset, test_fraction: float, seed: int, *, test_salt: bytes | None = None
) -> tuple[Dataset, Dataset]:
    """(train, test): a seeded random permutation, the first round(n*test_fraction) samples
    are the test set. The training part gets the zero salt, the test part `test_salt` or a
    fresh random one (so its on-chain commitment cannot be brute-forced)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(ds.n * test_fraction))
    if not 1 <= n_test < ds.n:
        raise ValueError(f"test_fraction {test_fraction} leaves an empty part of {ds.n} samples")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(ds.n)
    test_idx, train_idx = order[:n_test], order[n_test:]
    salt = secrets.token_bytes(SALT_SIZE) if test_salt is None else test_salt

    def part(idx: np.ndarray, part_salt: bytes) -> Dataset:
        return Dataset(ds.features[idx], ds.labels[idx], ds.num_classes, part_salt, ds.image_shape)

    return part(train_idx, ZERO_SALT), part(test_idx, salt)
