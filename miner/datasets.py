"""Datasets: the in-memory form, the canonical byte encoding, built-in and user datasets.

A dataset is what a data node posts (training set) or keeps secret until the release (test set).
Features are integers 0..255 (the data node quantises its raw features before posting), labels
are class indices 0..num_classes-1. The canonical encoding is what gets hashed on chain:

    offset  size   field
    0       4      magic b"PLDS"
    4       1      version: 1 = the features are the raw values (integers 0..255),
                   2 = a quantisation section (how raw features became 0..255) follows
    5       4      n, number of samples            u32 big-endian, 1..MAX_SAMPLES
    9       4      d, features per sample          u32 big-endian, 1..MAX_FEATURES
    13      2      num_classes                     u16 big-endian, 2..256
    15      6      image shape (c, h, w)           3 x u16 big-endian, all zero if not an image,
                                                   else all >= 1 with c*h*w == d
    21      32     salt                            zero for training sets, random for test sets
    53      Q      version 2 only (Q = 1 + 16 d):
                       1     rounding              1 = half to even, 2 = floor
                       8 d   low, per feature      float64 little-endian, finite
                       8 d   span, per feature     float64 little-endian, finite, >= 0
    53+Q    n*d    features, row-major             one unsigned byte each (0..255)
    53+Q+n*d n     labels                          one unsigned byte each (< num_classes)

(Q = 0 for version 1.) Nothing else: decoding rejects truncated input, trailing bytes, unknown
roundings and non-finite or negative quantisation values, so each dataset has exactly one
encoding (the version follows from whether it has a quantisation) and `dataset_digest` is a
function of the dataset alone.

The quantisation travels with the task so that whoever receives the trained model can feed it
raw data exactly as the data node's source held it (pole_chain/clients/model_delivery.py).
Applying it uses numpy float64 and is not consensus-critical: nodes only ever evaluate the
integer features that result.
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
DATASET_VERSION = 1  # no quantisation section: the features are the raw values
QUANTIZED_DATASET_VERSION = 2  # a quantisation section follows the header
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


ROUNDINGS = {1: "half_even", 2: "floor"}  # wire code -> name
_ROUNDING_CODES = {name: code for code, name in ROUNDINGS.items()}
_FLOAT64 = np.dtype("<f8")


@dataclass(frozen=True, eq=False)
class FeatureQuantization:
    """How the data node turned raw features into integers 0..255, feature by feature:

        q_j = clip(round((x_j - low_j) / span_j * 255), 0, 255)      (0 where span_j == 0)

    with round = numpy's rint (half to even) or floor, all in float64. IEEE-754 subtraction,
    division and multiplication are correctly rounded, so the same raw values give the same
    integers on every machine. The arrays are copied and made read-only.
    """

    low: np.ndarray  # float64, (d,)
    span: np.ndarray  # float64, (d,), >= 0
    rounding: str = "half_even"  # a value of ROUNDINGS

    def __post_init__(self) -> None:
        low = np.array(self.low, dtype=np.float64)
        span = np.array(self.span, dtype=np.float64)
        _check_quantization(low, span, self.rounding)
        low.setflags(write=False)
        span.setflags(write=False)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "span", span)

    @property
    def d(self) -> int:
        return int(self.low.shape[0])

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Raw features (n, d), any real numbers -> the dataset's integer features, int16."""
        x = np.asarray(raw)
        if x.dtype.kind not in "iuf":
            raise DatasetFormatError(f"raw features must be real numbers, got dtype {x.dtype}")
        x = x.astype(np.float64)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise DatasetFormatError(f"raw features must have shape (n, {self.d}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise DatasetFormatError("raw features contain NaN or infinity")
        positive = self.span > 0
        with np.errstate(over="ignore"):  # a huge value saturates at 0 or 255 below
            scaled = np.where(positive, (x - self.low) / np.where(positive, self.span, 1.0), 0.0)
            scaled = scaled * MAX_FEATURE_VALUE
        rounded = np.rint(scaled) if self.rounding == "half_even" else np.floor(scaled)
        return np.clip(rounded, 0, MAX_FEATURE_VALUE).astype(np.int16)

    def to_obj(self) -> dict:
        """The JSON form (Python's float repr round-trips float64 exactly)."""
        return {
            "rule": "q = clip(round((x - low) / span * 255), 0, 255), 0 where span == 0",
            "rounding": self.rounding,
            "low": self.low.tolist(),
            "span": self.span.tolist(),
        }

    @classmethod
    def from_obj(cls, obj: dict) -> "FeatureQuantization":
        if not isinstance(obj, dict) or not {"rounding", "low", "span"} <= set(obj):
            raise DatasetFormatError("a quantisation needs 'rounding', 'low' and 'span'")
        for key in ("low", "span"):
            values = obj[key]
            if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
            ):
                raise DatasetFormatError(f"quantisation {key} must be a list of numbers")
        return cls(np.array(obj["low"], dtype=np.float64), np.array(obj["span"], dtype=np.float64),
                   obj["rounding"])


def _check_quantization(low: np.ndarray, span: np.ndarray, rounding: object) -> None:
    if rounding not in _ROUNDING_CODES:
        raise DatasetFormatError(
            f"quantisation rounding {rounding!r} not one of {sorted(_ROUNDING_CODES)}"
        )
    if low.ndim != 1 or span.shape != low.shape:
        raise DatasetFormatError(f"quantisation low {low.shape} and span {span.shape} must be (d,)")
    if not 1 <= low.shape[0] <= MAX_FEATURES:
        raise DatasetFormatError(f"quantisation of {low.shape[0]} features outside 1..{MAX_FEATURES}")
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(span))):
        raise DatasetFormatError("quantisation low and span must be finite")
    if np.any(span < 0):
        raise DatasetFormatError("quantisation span must be >= 0")


def min_max_quantization(x: np.ndarray) -> FeatureQuantization:
    """Per-feature min-max scaling to 0..255, fitted on `x` (n, d); round half to even.

    A constant feature becomes 0."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DatasetFormatError(f"features must be 2-D, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DatasetFormatError("features contain NaN or infinity")
    low = x.min(axis=0)
    return FeatureQuantization(low, x.max(axis=0) - low, "half_even")


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
    #: How the raw source features became `features`; None if they are the raw values.
    quantization: FeatureQuantization | None = None

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
    if ds.quantization is not None:
        if not isinstance(ds.quantization, FeatureQuantization):
            raise DatasetFormatError(
                f"quantization must be a FeatureQuantization, got {ds.quantization!r}"
            )
        if ds.quantization.d != d:
            raise DatasetFormatError(f"quantisation is for {ds.quantization.d} features, d={d}")


# --- canonical encoding -------------------------------------------------------------------


def encode_dataset(ds: Dataset) -> bytes:
    """The canonical bytes of a dataset (layout in the module docstring)."""
    c, h, w = ds.image_shape if ds.image_shape is not None else (0, 0, 0)
    version = DATASET_VERSION if ds.quantization is None else QUANTIZED_DATASET_VERSION
    header = _HEADER.pack(DATASET_MAGIC, version, ds.n, ds.d, ds.num_classes, c, h, w, ds.salt)
    return (
        header
        + _encode_quantization(ds.quantization)
        + ds.features.astype(np.uint8).tobytes(order="C")
        + ds.labels.tobytes()
    )


def _encode_quantization(quantization: FeatureQuantization | None) -> bytes:
    if quantization is None:
        return b""
    return (
        bytes([_ROUNDING_CODES[quantization.rounding]])
        + quantization.low.astype(_FLOAT64).tobytes()
        + quantization.span.astype(_FLOAT64).tobytes()
    )


def decode_dataset(data: bytes) -> Dataset:
    """Parse canonical bytes; raise DatasetFormatError on any deviation from the format."""
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise DatasetFormatError(f"truncated header: {len(data)} bytes, need {HEADER_SIZE}")
    magic, version, n, d, num_classes, c, h, w, salt = _HEADER.unpack_from(data)
    if magic != DATASET_MAGIC:
        raise DatasetFormatError(f"bad magic {magic!r}, expected {DATASET_MAGIC!r}")
    if version not in (DATASET_VERSION, QUANTIZED_DATASET_VERSION):
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
    quantization, offset = None, HEADER_SIZE
    if version == QUANTIZED_DATASET_VERSION:
        quantization, offset = _decode_quantization(data, d)
    expected = offset + n * d + n
    if len(data) < expected:
        raise DatasetFormatError(f"truncated dataset: {len(data)} bytes, expected {expected}")
    if len(data) > expected:
        raise DatasetFormatError(f"{len(data) - expected} trailing bytes after dataset")
    features = np.frombuffer(data, dtype=np.uint8, count=n * d, offset=offset)
    labels = np.frombuffer(data, dtype=np.uint8, count=n, offset=offset + n * d)
    return Dataset(
        features=features.reshape(n, d).astype(np.int16),
        labels=labels,
        num_classes=num_classes,
        salt=salt,
        image_shape=image_shape,
        quantization=quantization,
    )


def _decode_quantization(data: bytes, d: int) -> tuple[FeatureQuantization, int]:
    """The version-2 section after the header -> (quantisation, offset of the features)."""
    end = HEADER_SIZE + 1 + 2 * _FLOAT64.itemsize * d
    if len(data) < end:
        raise DatasetFormatError(f"truncated quantisation: {len(data)} bytes, need {end}")
    code = data[HEADER_SIZE]
    if code not in ROUNDINGS:
        raise DatasetFormatError(f"unknown quantisation rounding code {code}")
    low = np.frombuffer(data, dtype=_FLOAT64, count=d, offset=HEADER_SIZE + 1)
    span = np.frombuffer(data, dtype=_FLOAT64, count=d, offset=HEADER_SIZE + 1 + _FLOAT64.itemsize * d)
    return FeatureQuantization(low, span, ROUNDINGS[code]), end


def dataset_digest(ds: Dataset) -> bytes:
    """keccak256 of the canonical encoding: the on-chain dataset digest / test-set commitment."""
    return keccak(encode_dataset(ds))


# --- built-in datasets (scikit-learn's bundled files, no downloads) ------------------------


#: load_digits() holds integers 0..16; v -> floor(v * 255 / 16), exact in float64.
DIGITS_QUANTIZATION = FeatureQuantization(np.zeros(64), np.full(64, 16.0), "floor")
_SKLEARN_LOADERS = {
    "digits": "load_digits",  # 1797 x 64 (8x8 images), 10 classes, integers 0..16
    "breast_cancer": "load_breast_cancer",  # 569 x 30, 2 classes
    "wine": "load_wine",  # 178 x 13, 3 classes
    "iris": "load_iris",  # 150 x 4, 3 classes
}
#: digits28: the same 1797 digits upsampled to 28x28 (MNIST's size, no download), see
#: `upsample_digits`; raw values stay in 0..16, quantised like digits.
DIGITS28_QUANTIZATION = FeatureQuantization(np.zeros(784), np.full(784, 16.0), "floor")
BUILTIN_DATASETS: tuple[str, ...] = tuple(_SKLEARN_LOADERS) + ("digits28",)
DEFAULT_DATASET = "digits"


def _bilinear_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) integer matrix W, rows summing to 2*dst: bilinear interpolation with pixel
    centres aligned (torch's align_corners=False, edges clamped), times 2*dst. For 8 -> 28 the
    source position of output pixel i is (4i - 5) / 14, so every weight is an integer / 56."""
    scale = 2 * dst
    weights = np.zeros((dst, src), dtype=np.int64)
    for i in range(dst):
        pos = (2 * i + 1) * src - dst  # source position times 2*dst
        pos = min(max(pos, 0), (src - 1) * scale)
        left, frac = divmod(pos, scale)
        weights[i, left] += scale - frac
        if frac:
            weights[i, left + 1] += frac
    return weights


def upsample_digits(images: np.ndarray, size: int = 28) -> np.ndarray:
    """(n, 8, 8) values 0..16 -> (n, size, size) float64 values 0..16: bilinear upsampling
    computed in integers (W @ img @ W.T, exact in int64) and divided once by the weights'
    scale, so the result is the same on every machine."""
    n, h, w = images.shape
    rows, cols = _bilinear_weights(h, size), _bilinear_weights(w, size)
    exact = np.einsum("ia,nab,jb->nij", rows, images.astype(np.int64), cols)  # int64, exact
    return exact / float(4 * size * size)


def load_builtin_source(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of a built-in dataset exactly as scikit-learn ships them, before quantisation:
    the raw data a delivered model's user holds."""
    if name not in BUILTIN_DATASETS:
        raise DatasetFormatError(f"unknown built-in dataset {name!r}; choose from {BUILTIN_DATASETS}")
    if name == "digits28":
        raw, labels = load_builtin_source("digits")
        return upsample_digits(raw.reshape(-1, 8, 8)).reshape(-1, 784), labels
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, _SKLEARN_LOADERS[name])()
    return np.asarray(bunch.data), np.asarray(bunch.target)


def load_builtin(name: str = DEFAULT_DATASET) -> Dataset:
    """One of BUILTIN_DATASETS, quantised to 0..255 (the quantisation attached), zero salt:
    digits by DIGITS_QUANTIZATION (the 0..16 range), the others min-max per feature."""
    raw, labels = load_builtin_source(name)
    if name == "digits":
        return Dataset(DIGITS_QUANTIZATION.apply(raw), labels, num_classes=10,
                       image_shape=(1, 8, 8), quantization=DIGITS_QUANTIZATION)
    if name == "digits28":
        return Dataset(DIGITS28_QUANTIZATION.apply(raw), labels, num_classes=10,
                       image_shape=(1, 28, 28), quantization=DIGITS28_QUANTIZATION)
    quantization = min_max_quantization(raw)
    return Dataset(quantization.apply(raw), labels, num_classes=int(labels.max()) + 1,
                   quantization=quantization)


# --- user datasets --------------------------------------------------------------------------


def load_user_dataset(
    path: str | Path,
    *,
    num_classes: int | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> Dataset:
    """A dataset from a .npz file (arrays X and y) or a .csv file (label in the last column,
    optional header row).

    Features that are already integers 0..255 are kept (no quantisation); any other numbers are
    min-max quantised per feature to 0..255 and the quantisation is attached. Labels must be
    integers 0..255; num_classes defaults to max label + 1.
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
    features, quantization = _integer_features(x, path)
    return Dataset(features, labels, num_classes=classes, image_shape=image_shape,
                   quantization=quantization)


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


def _integer_features(x: np.ndarray, path: Path) -> tuple[np.ndarray, FeatureQuantization | None]:
    if x.dtype.kind not in "iuf":
        raise DatasetFormatError(f"{path}: features must be numeric")
    if not np.all(np.isfinite(x)):
        raise DatasetFormatError(f"{path}: features contain NaN or infinity")
    if np.all(x == np.floor(x)) and x.min() >= 0 and x.max() <= MAX_FEATURE_VALUE:
        return x.astype(np.int16), None
    quantization = min_max_quantization(x)
    return quantization.apply(x), quantization


# --- train/test split ----------------------------------------------------------------------


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(test rows, training rows) of a dataset of n samples: a seeded random permutation, the
    first round(n*test_fraction) are the test set. With the data node's record (test_fraction,
    split_seed) this says which rows of the raw source ended up in the secret test set."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(n * test_fraction))
    if not 1 <= n_test < n:
        raise ValueError(f"test_fraction {test_fraction} leaves an empty part of {n} samples")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(n)
    return order[:n_test], order[n_test:]


def split_dataset(
    ds: Dataset, test_fraction: float, seed: int, *, test_salt: bytes | None = None
) -> tuple[Dataset, Dataset]:
    """(train, test) by `split_indices`. The training part gets the zero salt, the test part
    `test_salt` or a fresh random one (so its on-chain commitment cannot be brute-forced).
    Both keep the dataset's image shape and quantisation."""
    test_idx, train_idx = split_indices(ds.n, test_fraction, seed)
    salt = secrets.token_bytes(SALT_SIZE) if test_salt is None else test_salt

    def part(idx: np.ndarray, part_salt: bytes) -> Dataset:
        return Dataset(
            ds.features[idx], ds.labels[idx], ds.num_classes, part_salt, ds.image_shape,
            ds.quantization,
        )

    return part(train_idx, ZERO_SALT), part(test_idx, salt)
