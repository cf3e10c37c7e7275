"""Secure mapping layer (SML): a fixed, non-trainable first layer bound to a block and a miner.

    seed = keccak(anchor_hash || miner)                       32 + 20 bytes in
    S    = ternary matrix, shape (SML_EXPANSION * d, d)       entries -1, 0, +1
    sml(x) = relu(S @ x)                                      int64, exact

S is read row-major from a keccak counter-mode byte stream:

    block_i = keccak(seed || i.to_bytes(8, "big"))            i = 0, 1, 2, ...
    stream  = block_0 || block_1 || ...

Each stream byte b gives one entry: bytes b >= 252 are skipped (252 = 6 * 42, so the accepted
bytes are uniform mod 6), and b % 6 == 0 gives +1, b % 6 == 1 gives -1, anything else 0. So
P(+1) = P(-1) = 1/6 and P(0) = 2/3. Only keccak and integer arithmetic are involved: the matrix
is the same on every machine and every numpy/torch version.

Why a copier cannot undo it: S has twice as many rows as columns and its output goes through a
ReLU. A model trained behind miner A's SML is a function of relu(S_A x); to reuse it, miner B
would need relu(S_A x) from relu(S_B x), a non-linear function of the input that B's first
(linear) layer cannot fold in. See docs/ML.md.

The float model sees relu(S @ x) / 2**output_shift (a power of two, so the scaling is exact in
float32 and disappears in the integer model's first right shift).

A convolutional model gets a local SML instead (`local_sml_for`): the dense S scrambles pixel
neighbourhoods, which costs a CNN about two accuracy points. The local map has E maps per
input channel; output r (channel r // (h*w), pixel r % (h*w) of the model's (E*c, h, w)
input) is

    relu(sum of s * x over the 3x3 window around that pixel, every input channel)

with signs s = +1 or -1 read bit by bit (most significant first) from the same keccak
stream, row by row over each row's window in column order. It is still a fixed sparse
matrix (at most 9c non-zeros a row, E*d rows for d inputs) plus a ReLU, and just as bound to
the anchor and the miner. Which SML a task gets is one rule, `model_sml`: a model whose input
is an image (c', h, w) with c' = E*c, 2 <= E <= 8, gets the local map, any other the dense one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from eth_utils import keccak

from miner.products import exact_products

SML_EXPANSION = 2
ANCHOR_HASH_SIZE = 32
MINER_ADDRESS_SIZE = 20
MAX_SML_INPUT_DIM = 4096
#: Maps per input channel a local SML may have (E): at least 2 so that it has more rows than
#: inputs (as the dense SML), at most 8 (the first conv layer's cost grows with E).
LOCAL_SML_EXPANSIONS = range(2, 9)
#: E of the built-in cnn: 0.17 accuracy points behind no SML at all on digits, where E = 2
#: costs 1.78 and E = 4 0.67 (docs/ML.md, "A CNN SML that keeps neighbourhoods").
LOCAL_SML_EXPANSION = 8
#: The most rows a local SML may have; it is held as a dense int8 matrix too (32 MB at most).
MAX_LOCAL_SML_ROWS = 8192
FEATURE_MAX = 255  # dataset features are integers 0..255 (miner/datasets.py)
_ACCEPT_BELOW = 252  # largest multiple of 6 that fits a byte
_COUNTER_BYTES = 8


def sml_seed(anchor_hash: bytes, miner: bytes) -> bytes:
    """keccak(anchor_hash || miner): the 32-byte hash of the task's anchor block (nobody can
    train before it exists; docs/PROTOCOL.md, "Task anchor"), the 20-byte miner address."""
    if len(anchor_hash) != ANCHOR_HASH_SIZE:
        raise ValueError(f"anchor hash must be {ANCHOR_HASH_SIZE} bytes, got {len(anchor_hash)}")
    if len(miner) != MINER_ADDRESS_SIZE:
        raise ValueError(f"miner address must be {MINER_ADDRESS_SIZE} bytes, got {len(miner)}")
    return keccak(bytes(anchor_hash) + bytes(miner))


def keccak_stream(seed: bytes, num_blocks: int, first_block: int = 0) -> bytes:
    """keccak(seed || counter) for counter = first_block .. first_block+num_blocks-1, joined."""
    return b"".join(
        keccak(seed + i.to_bytes(_COUNTER_BYTES, "big"))
        for i in range(first_block, first_block + num_blocks)
    )


def ternary_matrix(seed: bytes, rows: int, cols: int) -> np.ndarray:
    """The (rows, cols) int8 matrix read row-major from seed's keccak stream (see module doc)."""
    count = rows * cols
    accepted: list[np.ndarray] = []
    have = 0
    next_block = 0
    while have < count:
        # ~1.6% of bytes are rejected; ask for a little more than what is missing.
        blocks = (count - have) * 66 // 64 // 32 + 1
        chunk = np.frombuffer(keccak_stream(seed, blocks, next_block), dtype=np.uint8)
        next_block += blocks
        chunk = chunk[chunk < _ACCEPT_BELOW]
        accepted.append(chunk)
        have += chunk.size
    residues = np.concatenate(accepted)[:count] % 6
    entries = np.zeros(count, dtype=np.int8)
    entries[residues == 0] = 1
    entries[residues == 1] = -1
    return entries.reshape(rows, cols)


def output_shift_for(input_dim: int) -> int:
    """The power of two the float model divides SML outputs by: 6 + ceil(ceil(log2 d) / 2).

    Features are below 2**8 and a row of S has about d/3 random +-1 entries, so relu(S @ x) is
    of order 2**6 * sqrt(d); this shift brings the float model's inputs to order 1 (digits:
    d = 64, shift 9, mean input about 0.5). Measured on the built-in datasets: two bits
    smaller or larger trains worse with the default Adam settings.
    """
    ceil_log2 = (input_dim - 1).bit_length()
    return 6 + (ceil_log2 + 1) // 2


@dataclass(frozen=True, eq=False)
class SML:
    """relu(matrix @ x) with a fixed ternary int8 matrix of shape (out_dim, input_dim)."""

    matrix: np.ndarray  # int8, (out_dim, input_dim), read-only
    output_shift: int  # the float model sees apply_int(x) / 2**output_shift

    @property
    def input_dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.matrix.shape[0])

    def matrix_digest(self) -> bytes:
        """keccak of the matrix as row-major int8 bytes (for tests and logs)."""
        return keccak(self.matrix.astype(np.int8).tobytes(order="C"))

    def apply_int(self, features: np.ndarray) -> np.ndarray:
        """relu(S @ x) for each row x of features (n, input_dim) -> int64 (n, out_dim).

        Exact in float32, BLAS sgemm (half the time of float64 at these sizes): entries are
        0 or +-1 and features 0..255 (checked), so every partial sum is an integer of
        magnitude <= 255 * 4096 < 2**20, which float32's 24-bit significand holds exactly;
        the product is computed in any order without rounding (docs/ML.md, "Deterministic
        evaluation"). The features' range is the premise, so it is checked, not assumed.
        """
        mapped = exact_products(self._checked(features), self._float_matrix_t)  # (n, out_dim)
        return np.maximum(mapped, 0).astype(np.int64)

    def _checked(self, features: np.ndarray) -> np.ndarray:
        """The features as float32 (n, input_dim), once their type, shape and range hold."""
        x = np.asarray(features)
        if x.dtype.kind not in "iu":
            raise TypeError(f"SML input must be integers, got {x.dtype}")
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"SML expects (n, {self.input_dim}) features, got {x.shape}")
        if x.size and (int(x.min()) < 0 or int(x.max()) > FEATURE_MAX):
            raise ValueError(f"SML features must be integers 0..{FEATURE_MAX}")
        return x.astype(np.float32)

    @property
    def macs_per_sample(self) -> int:
        """Products the map costs a sample (the evaluation cost limit counts them)."""
        return self.out_dim * self.input_dim

    @cached_property
    def _float_matrix_t(self) -> np.ndarray:
        """S.T as float32, made once per SML (the evaluator maps a dataset in chunks)."""
        return np.ascontiguousarray(self.matrix.T, dtype=np.float32)

    def apply_float(self, features: np.ndarray) -> np.ndarray:
        """What the float model sees: apply_int(x) / 2**output_shift, as float32 (exact)."""
        return np.ldexp(self.apply_int(features).astype(np.float32), -self.output_shift)

    def as_torch_layer(self):
        """A frozen torch module computing relu(x @ S.T) in float32 on float32 inputs.

        It gives exactly apply_int's numbers for features 0..255 and input_dim <= 4096: every
        partial sum is an integer below 2**20 < 2**24, which float32 represents exactly, so
        the summation order of the matmul does not matter.
        """
        import torch

        layer = torch.nn.Linear(self.input_dim, self.out_dim, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(self.matrix.astype(np.float32)))
        layer.weight.requires_grad_(False)
        return torch.nn.Sequential(layer, torch.nn.ReLU())


@lru_cache(maxsize=32)
def _cached_matrix(seed: bytes, rows: int, cols: int) -> np.ndarray:
    matrix = ternary_matrix(seed, rows, cols)
    matrix.setflags(write=False)
    return matrix


def sml_for(anchor_hash: bytes, miner: bytes, input_dim: int) -> SML:
    """The SML of `miner` for the task anchored at block `anchor_hash`, for d = input_dim
    features."""
    if not 1 <= input_dim <= MAX_SML_INPUT_DIM:
        raise ValueError(f"SML input dimension {input_dim} outside 1..{MAX_SML_INPUT_DIM}")
    seed = sml_seed(anchor_hash, miner)
    matrix = _cached_matrix(seed, SML_EXPANSION * input_dim, input_dim)
    return SML(matrix=matrix, output_shift=output_shift_for(input_dim))


@dataclass(frozen=True, eq=False)
class LocalSML(SML):
    """The local SML (module doc): the same relu(S @ x), computed as nine shifted
    multiply-adds per input channel instead of a dense product with a mostly-zero S.

    Exact in float32: a sum has at most 9c terms of magnitude <= 255 (c <= 4096), far below
    2**24, so no order of additions rounds; it equals the dense product bit for bit (tested).
    """

    image_shape: tuple[int, int, int]  # (c, h, w) of the features

    @property
    def macs_per_sample(self) -> int:
        return int(np.count_nonzero(self.matrix))

    def apply_int(self, features: np.ndarray) -> np.ndarray:
        c, h, w = self.image_shape
        x = self._checked(features).reshape(-1, c, h, w)
        out = np.empty((x.shape[0], self.out_dim), dtype=np.int64)
        for start in range(0, x.shape[0], _LOCAL_CHUNK):
            padded = np.pad(x[start : start + _LOCAL_CHUNK], ((0, 0), (0, 0), (1, 1), (1, 1)))
            mapped = np.zeros((padded.shape[0], self.out_dim // (h * w), h * w), dtype=np.float32)
            for (dy, dx), signs in zip(_WINDOW, self._signs):
                for channel in range(c):
                    shifted = padded[:, channel, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                    mapped += shifted.reshape(-1, 1, h * w) * signs[channel]
            out[start : start + padded.shape[0]] = np.maximum(mapped.reshape(padded.shape[0], -1), 0)
        return out

    @cached_property
    def _signs(self) -> np.ndarray:
        """float32 (9, c, out channels, h*w): the entry of S joining each output to the input
        pixel at each window offset (0 where the window leaves the image), read from S."""
        c, h, w = self.image_shape
        out_channels = self.out_dim // (h * w)
        pixel = np.arange(h * w)
        py, px = np.divmod(pixel, w)
        rows = np.arange(out_channels)[:, None] * (h * w) + pixel[None, :]
        signs = np.zeros((len(_WINDOW), c, out_channels, h * w), dtype=np.float32)
        for o, (dy, dx) in enumerate(_WINDOW):
            inside = (0 <= py + dy) & (py + dy < h) & (0 <= px + dx) & (px + dx < w)
            source = (py + dy) * w + px + dx
            for channel in range(c):
                picked = self.matrix[rows[:, inside], channel * h * w + source[inside]]
                signs[o, channel][:, inside] = picked
        return signs


_WINDOW = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
#: Samples mapped at a time: their outputs stay in cache across the nine passes (measured
#: on 28x28, E = 8: 0.41 s per 10,000 samples at 64, 0.69 s at 512).
_LOCAL_CHUNK = 64


class SMLShapeError(ValueError):
    """A model input that no SML of the task's features produces."""


def sml_layout(input_shape: tuple[int, ...], d: int) -> tuple[int, int, int, int] | None:
    """(E, c, h, w) when a model taking `input_shape` gets the local SML of d features, None
    when it gets the dense one; SMLShapeError when it can take neither. The one place the
    rule lives (module doc)."""
    if not 1 <= d <= MAX_SML_INPUT_DIM:
        raise SMLShapeError(f"SML input dimension {d} outside 1..{MAX_SML_INPUT_DIM}")
    if len(input_shape) != 3:
        values = int(np.prod(input_shape))
        if values != SML_EXPANSION * d:
            raise SMLShapeError(
                f"model input has {values} values, the SML of {d} features gives {SML_EXPANSION * d}"
            )
        return None
    channels, h, w = input_shape
    if d % (h * w):
        raise SMLShapeError(
            f"an image input {tuple(input_shape)} needs {h}x{w} images: {d} features is not a "
            f"multiple of {h * w}"
        )
    c = d // (h * w)
    expansion = channels // c
    if channels % c or expansion not in LOCAL_SML_EXPANSIONS:
        raise SMLShapeError(
            f"an image input {tuple(input_shape)} over {c}-channel {h}x{w} images must have "
            f"E*{c} channels, E in {LOCAL_SML_EXPANSIONS.start}..{LOCAL_SML_EXPANSIONS.stop - 1}"
        )
    if channels * h * w > MAX_LOCAL_SML_ROWS:
        raise SMLShapeError(
            f"a local SML of {channels * h * w} outputs exceeds {MAX_LOCAL_SML_ROWS}; use a smaller E"
        )
    return expansion, c, h, w


def check_sml_fits(input_shape: tuple[int, ...], d: int) -> None:
    """Raise SMLShapeError unless some SML of d features gives a model input `input_shape`."""
    sml_layout(input_shape, d)


def model_sml(anchor_hash: bytes, miner: bytes, input_shape: tuple[int, ...], d: int) -> SML:
    """The SML of `miner` for the task anchored at `anchor_hash` whose model takes
    `input_shape`, over d features: local for image models, dense otherwise (`sml_layout`)."""
    layout = sml_layout(input_shape, d)
    if layout is None:
        return sml_for(anchor_hash, miner, d)
    return local_sml_for(anchor_hash, miner, layout)


def local_sml_for(anchor_hash: bytes, miner: bytes, layout: tuple[int, int, int, int]) -> LocalSML:
    """The local SML (module doc) for (E, c, h, w): E*c*h*w rows over c*h*w features."""
    matrix = _cached_local_matrix(sml_seed(anchor_hash, miner), layout)
    return LocalSML(matrix=matrix, output_shift=_output_shift(layout, 0), image_shape=layout[1:])


def _output_shift(layout: tuple[int, int, int, int] | None, d: int) -> int:
    """The dense SML's rows have about d/3 taps, the local SML's at most 9c (module doc)."""
    return output_shift_for(d if layout is None else 9 * layout[1])


@lru_cache(maxsize=8)
def _cached_local_matrix(seed: bytes, layout: tuple[int, int, int, int]) -> np.ndarray:
    expansion, c, h, w = layout
    py, px = np.divmod(np.arange(h * w), w)
    near = (np.abs(py[:, None] - py[None, :]) <= 1) & (np.abs(px[:, None] - px[None, :]) <= 1)
    mask = np.tile(near, (expansion * c, c))  # row = channel * h*w + pixel, as the columns
    taps = int(mask.sum())
    stream = keccak_stream(seed, taps // 256 + 1)  # 256 bits a block
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8))[:taps]
    matrix = np.zeros(mask.shape, dtype=np.int8)
    matrix[mask] = np.where(bits == 1, 1, -1)  # row-major: row by row, columns ascending
    matrix.setflags(write=False)
    return matrix


def sml_of_matrix(matrix: np.ndarray, input_shape: tuple[int, ...], d: int) -> SML:
    """An SML from a matrix someone kept (a delivered model), with the output shift its
    kind has; applied densely, which gives the same numbers for either kind."""
    frozen = np.array(matrix, dtype=np.int8)
    frozen.setflags(write=False)
    return SML(matrix=frozen, output_shift=_output_shift(sml_layout(input_shape, d), d))


def identity_mapping(input_dim: int) -> SML:
    """No SML at all (x -> x, features are already >= 0): the baseline for bench.sml_cost.

    Not a consensus object. Its output shift is 8: features are at most 255.
    """
    matrix = np.eye(input_dim, dtype=np.int8)
    matrix.setflags(write=False)
    return SML(matrix=matrix, output_shift=8)
