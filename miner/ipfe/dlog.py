"""Bounded discrete logarithms: baby-step giant-step with a baby-step table kept on disk.

Decryption ends with a group element V = v g and needs v, a signed integer with |v| <= B.

Baby steps. The table holds j g for j = 1..m, keyed by the abscissa of the point. A point and
its negation share their abscissa, so one table answers +-j: the stored y parity (the SEC 1
prefix of +j g) tells which. The identity is v = 0. One lookup therefore covers |v| <= m.

Giant steps. For B > m, stride S = (2m + 1) g: v = t (2m + 1) + j with |j| <= m, so V - t S
and V + t S for t = 1..ceil((B - m) / (2m + 1)) reach every |v| <= B. By default m = B (up to
MAX_BABY_STEPS), so no giant step is ever needed: a batch of decryptions is one vectorised
numpy search.

On disk. `bsgs-<curve>-m<m>.npy` in the cache directory (POLE_CACHE_DIR, else
~/.cache/pole, or a directory passed in): a (m, 6) uint64 array, one row per baby step,

    x[0:8], x[8:16], x[16:24], x[24:32]    the abscissa as four big-endian 64-bit words
    j                                      1..m
    parity                                 0 if the y of j g is even (prefix 0x02), else 1

sorted by the first word (all first words differ; building checks it). The table depends on the
curve and m only, not on the backend, the bound or any key, so one file serves every task of the
same size; it is written atomically and checked when loaded (shape, order, the j column a
permutation of 1..m, and a few rows recomputed); a file that fails is rebuilt.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import IPFEDecryptError, IPFEFormatError
from .group import ELEMENT_SIZE, Group

log = logging.getLogger(__name__)

#: Largest |<x, y>| any table here covers: 4096 features of 0..255 under ternary rows need
#: 4096 * 255 = 1,044,480 < 2**20 (miner.ipfe.batch.check_bound).
MAX_DLOG_BOUND = 1 << 20
#: Largest table built by default (48 MiB on disk, about 20 s with coincurve).
MAX_BABY_STEPS = 1 << 20
_SPOT_CHECKS = 4

_builds = 0


def table_builds() -> int:
    """How many tables this process has built (not loaded): for tests and logs."""
    return _builds


def default_cache_dir() -> Path:
    env = os.environ.get("POLE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "pole"


def table_path(directory: Path, curve: str, baby_steps: int) -> Path:
    return Path(directory) / f"bsgs-{curve}-m{baby_steps}.npy"


def _rows_of(encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 33) uint8 encodings -> ((K, 4) uint64 abscissa words, (K,) prefixes)."""
    words = np.ascontiguousarray(encoded[:, 1:]).view(">u8").astype(np.uint64)
    return words, encoded[:, 0]


def _as_encoded(encoded) -> np.ndarray:
    if isinstance(encoded, np.ndarray):
        arr = encoded.astype(np.uint8, copy=False)
    else:
        arr = np.frombuffer(bytes(encoded), dtype=np.uint8)
    if arr.size % ELEMENT_SIZE:
        raise IPFEFormatError(f"encoded points must be a multiple of {ELEMENT_SIZE} bytes")
    return arr.reshape(-1, ELEMENT_SIZE)


@dataclass(frozen=True, eq=False)
class DlogTable:
    """Discrete logs v with |v| <= bound, from a table of `baby_steps` baby steps."""

    curve: str
    baby_steps: int  # m
    bound: int  # B
    table: np.ndarray  # (m, 6) uint64, sorted by column 0
    path: Path | None = None

    @property
    def giant_steps(self) -> int:
        """Giant steps per sign needed to reach the bound (0 when m >= B)."""
        m = self.baby_steps
        return max(0, -(-(self.bound - m) // (2 * m + 1)))

    # --- building and loading ------------------------------------------------------------------

    @classmethod
    def load_or_build(
        cls,
        group: Group,
        bound: int,
        directory: str | Path | None = None,
        *,
        baby_steps: int | None = None,
        progress: bool = False,
        persist: bool = True,
    ) -> "DlogTable":
        """The table for |v| <= bound: loaded from `directory` (default_cache_dir()) when a valid
        file is there, else built (and written there unless persist is False)."""
        if not 0 <= bound <= MAX_DLOG_BOUND:
            raise ValueError(f"discrete-log bound {bound} outside 0..{MAX_DLOG_BOUND}")
        m = baby_steps if baby_steps is not None else min(max(bound, 1), MAX_BABY_STEPS)
        if not 1 <= m <= MAX_BABY_STEPS:
            raise ValueError(f"baby steps {m} outside 1..{MAX_BABY_STEPS}")
        directory = Path(directory) if directory is not None else default_cache_dir()
        path = table_path(directory, group.name, m)
        table = cls._load(group, path, m)
        if table is None:
            table = cls._build(group, m, progress)
            if persist:
                cls._save(table, path)
        return cls(group.name, m, bound, table, path if persist or path.exists() else None)

    @staticmethod
    def _build(group: Group, m: int, progress: bool) -> np.ndarray:
        global _builds
        buf = bytearray(m * ELEMENT_SIZE)
        g = group.generator()
        point = g
        with tqdm(total=m, desc=f"BSGS table ({group.name}, m={m})", unit="pt",
                  disable=not progress, mininterval=0.5, leave=False) as bar:
            for j in range(m):
                buf[j * ELEMENT_SIZE:(j + 1) * ELEMENT_SIZE] = group.encode(point)
                point = group.add(point, g)
                if j % 4096 == 4095:
                    bar.update(4096)
            bar.update(m - bar.n)
        encoded = np.frombuffer(bytes(buf), dtype=np.uint8).reshape(m, ELEMENT_SIZE)
        words, prefixes = _rows_of(encoded)
        table = np.empty((m, 6), dtype=np.uint64)
        table[:, 0:4] = words
        table[:, 4] = np.arange(1, m + 1, dtype=np.uint64)
        table[:, 5] = (prefixes - 2).astype(np.uint64)
        table = table[np.argsort(table[:, 0], kind="stable")]
        if m > 1 and not np.all(np.diff(table[:, 0]) > 0):  # pragma: no cover - ~m^2 / 2^65
            raise RuntimeError("two baby steps share the first 64 bits of their abscissa")
        _builds += 1
        table.setflags(write=False)
        return table

    @staticmethod
    def _save(table: np.ndarray, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, table, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _load(group: Group, path: Path, m: int) -> np.ndarray | None:
        if not path.is_file():
            return None
        try:
            table = np.load(path, allow_pickle=False)
            ok = (
                table.dtype == np.uint64 and table.shape == (m, 6)
                and (m == 1 or bool(np.all(np.diff(table[:, 0]) > 0)))
                and np.array_equal(np.sort(table[:, 4]), np.arange(1, m + 1, dtype=np.uint64))
                and bool(np.all(table[:, 5] <= 1))
            )
            if ok:  # recompute a few rows (the first, the last, random ones)
                rows = {0, m - 1} | {secrets.randbelow(m) for _ in range(_SPOT_CHECKS)}
                for i in rows:
                    enc = np.frombuffer(group.encode(group.mul_gen(int(table[i, 4]))), dtype=np.uint8)
                    words, prefix = _rows_of(enc.reshape(1, ELEMENT_SIZE))
                    if not (np.array_equal(words[0], table[i, 0:4]) and int(prefix[0]) - 2 == int(table[i, 5])):
                        ok = False
                        break
        except (OSError, ValueError, EOFError, AttributeError):
            ok = False
        if not ok:
            log.warning("discrete-log table %s is invalid; rebuilding it", path)
            return None
        table.setflags(write=False)
        return table

    # --- solving -------------------------------------------------------------------------------

    def lookup(self, encoded) -> tuple[np.ndarray, np.ndarray]:
        """One table lookup for each 33-byte encoded point (bytes or a (K, 33) uint8 array):
        (values int64 (K,), found bool (K,)); found means |value| <= baby_steps."""
        enc = _as_encoded(encoded)
        words, prefixes = _rows_of(enc)
        first = self.table[:, 0]
        idx = np.minimum(np.searchsorted(first, words[:, 0]), self.baby_steps - 1)
        rows = self.table[idx]
        match = np.all(rows[:, 0:4] == words, axis=1) & ((prefixes == 2) | (prefixes == 3))
        sign = np.where(prefixes.astype(np.uint64) - 2 == rows[:, 5], 1, -1)
        values = np.where(match, sign * rows[:, 4].astype(np.int64), 0)
        identity = ~np.any(enc, axis=1)
        return values, match | identity

    def solve_encoded(self, group: Group, encoded) -> np.ndarray:
        """v for each encoded point v g, int64 (K,); IPFEDecryptError if some |v| > bound."""
        enc = _as_encoded(encoded)
        values, found = self.lookup(enc)
        missing = np.flatnonzero(~found)
        if missing.size and self.giant_steps:
            m = self.baby_steps
            stride = group.mul_gen(2 * m + 1)
            neg_stride = group.neg(stride)
            minus = [group.decode(enc[i].tobytes()) for i in missing]
            plus = list(minus)
            st = 2 * m + 1
            for t in range(1, self.giant_steps + 1):
                if not missing.size:
                    break
                minus = [group.add(p, neg_stride) for p in minus]  # v g - t S
                plus = [group.add(p, stride) for p in plus]  # v g + t S
                v_m, ok_m = self.lookup(b"".join(group.encode(p) for p in minus))
                v_p, ok_p = self.lookup(b"".join(group.encode(p) for p in plus))
                ok = ok_m | ok_p
                values[missing] = np.where(ok_m, v_m + t * st, v_p - t * st)
                found[missing] = ok
                keep = np.flatnonzero(~ok)
                missing = missing[keep]
                minus = [minus[i] for i in keep]
                plus = [plus[i] for i in keep]
        found &= np.abs(values) <= self.bound
        if not np.all(found):
            bad = int(np.count_nonzero(~found))
            raise IPFEDecryptError(
                f"{bad} of {found.size} decryptions are not within +-{self.bound}: a key that does "
                "not belong to this ciphertext, a tampered ciphertext or key, or an inner product "
                "beyond the table's bound"
            )
        return values

    def solve(self, group: Group, points) -> np.ndarray:
        """v for each group element v g (see solve_encoded)."""
        encoded = b"".join(group.encode(p) for p in points)
        return self.solve_encoded(group, encoded)
