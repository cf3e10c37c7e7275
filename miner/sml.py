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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from eth_utils import keccak

SML_EXPANSION = 2
ANCHOR_HASH_SIZE = 32
MINER_ADDRESS_SIZE = 20
MAX_SML_INPUT_DIM = 4096
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
        x = np.asarray(features)
        if x.dtype.kind not in "iu":
            raise TypeError(f"SML input must be integers, got {x.dtype}")
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"SML expects (n, {self.input_dim}) features, got {x.shape}")
        if x.size and (int(x.min()) < 0 or int(x.max()) > FEATURE_MAX):
            raise ValueError(f"SML features must be integers 0..{FEATURE_MAX}")
        mapped = np.matmul(x.astype(np.float32), self._float_matrix_t)  # (n, out_dim)
        return np.maximum(mapped, 0).astype(np.int64)

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


def identity_mapping(input_dim: int) -> SML:
    """No SML at all (x -> x, features are already >= 0): the baseline for bench.sml_cost.

    Not a consensus object. Its output shift is 8: features are at most 255.
    """
    matrix = np.eye(input_dim, dtype=np.int8)
    matrix.setflags(write=False)
    return SML(matrix=matrix, output_shift=8)
