"""Strategies that start from valid encodings and break them a little.

Random bytes stop at a decoder's first check (the magic, the type byte). Mutants of a valid
encoding get past it and reach the deep rules: lengths, ranges, canonical forms, trailing
bytes. Two families:

    mutated(valid)         byte-level edits: flip, overwrite with a boundary byte, insert,
                           delete, truncate, extend, duplicate a slice
    rlp_mutated(valid)     structure-level edits of an RLP item: replace, drop or add a field,
                           pad an integer with a leading zero, turn a string into a list
    rlp_scrambled(valid)   same-length random values in place of fields: the structure
                           deserializes, the rules behind it must refuse

and JSON values (`json_values`) with the awkward corners decoders meet: huge integers, NaN
and infinities, deep nesting, unhashable values where a string is expected.
"""
from __future__ import annotations

from typing import Any

import rlp
from rlp.sedes import big_endian_int
from hypothesis import strategies as st

#: Bytes where encodings change meaning: zero, sign bits, and RLP's length-prefix boundaries.
BOUNDARY_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x81, 0xB7, 0xB8, 0xBF, 0xC0, 0xF7, 0xF8, 0xFF)

_some_bytes = st.binary(max_size=40)


@st.composite
def _edit(draw: st.DrawFn, data: bytearray) -> bytearray:
    """One byte-level edit of `data` (may be empty)."""
    size = len(data)
    at = draw(st.integers(0, size))  # insertion point or index (clamped below)
    kind = draw(
        st.sampled_from(("flip", "boundary", "insert", "delete", "truncate", "extend", "repeat"))
    )
    if kind in ("flip", "boundary") and size:
        index = min(at, size - 1)
        if kind == "flip":
            data[index] ^= 1 << draw(st.integers(0, 7))
        else:
            data[index] = draw(st.sampled_from(BOUNDARY_BYTES))
    elif kind == "insert":
        data[at:at] = draw(_some_bytes)
    elif kind == "delete":
        del data[at : at + draw(st.integers(1, 8))]
    elif kind == "truncate":
        del data[at:]
    elif kind == "extend":
        data += draw(_some_bytes)
    elif kind == "repeat":
        end = min(size, at + draw(st.integers(1, 16)))
        data[at:at] = data[at:end]
    return data


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes], max_edits: int = 3) -> bytes:
    """A valid encoding drawn from `valid`, then 1..max_edits byte-level edits."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, max_edits))):
        data = draw(_edit(data))
    return bytes(data)


@st.composite
def region_mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes], head: int) -> bytes:
    """Edits confined to the first `head` bytes (headers and length fields), the body kept."""
    data = draw(valid)
    cut = min(head, len(data))
    front = bytearray(data[:cut])
    for _ in range(draw(st.integers(1, 3))):
        front = draw(_edit(front))
    return bytes(front) + data[cut:]


# -- RLP structure --------------------------------------------------------------------------

_rlp_items = st.recursive(
    st.one_of(st.binary(max_size=70), st.integers(0, 2**256 + 1).map(big_endian_int.serialize)),
    lambda children: st.lists(children, max_size=3),
    max_leaves=4,
)


def _paths(item: Any, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Every position in a nested RLP item, the root excluded."""
    paths = []
    if isinstance(item, list):
        for index, child in enumerate(item):
            paths.append(prefix + (index,))
            paths.extend(_paths(child, prefix + (index,)))
    return paths


@st.composite
def _rlp_edit(draw: st.DrawFn, item: list) -> list:
    paths = _paths(item)
    if not paths:
        return draw(_rlp_items.filter(lambda x: isinstance(x, list)))
    path = draw(st.sampled_from(paths))
    parent, index = _at(item, path[:-1]), path[-1]
    kind = draw(st.sampled_from(("replace", "drop", "add", "pad", "wrap", "resize")))
    target = parent[index]
    if kind == "replace":
        parent[index] = draw(_rlp_items)
    elif kind == "drop":
        del parent[index]
    elif kind == "add":
        parent.insert(index + draw(st.integers(0, 1)), draw(_rlp_items))
    elif kind == "pad" and isinstance(target, bytes):
        parent[index] = b"\x00" + target  # a non-canonical integer, a too-long hash
    elif kind == "wrap":
        parent[index] = [target]
    elif kind == "resize" and isinstance(target, bytes):
        size = draw(st.integers(0, len(target) + 2))
        parent[index] = (target + draw(st.binary(min_size=2, max_size=2)))[:size]
    return item


@st.composite
def rlp_mutated(
    draw: st.DrawFn, valid: st.SearchStrategy[bytes], prefix_size: int = 0
) -> bytes:
    """A valid encoding (an RLP list after `prefix_size` bytes) with 1..3 structural edits.

    The result is well-formed RLP, so the decoder's field rules are what must refuse it.
    """
    data = draw(valid)
    prefix, item = data[:prefix_size], rlp.decode(data[prefix_size:])
    for _ in range(draw(st.integers(1, 3))):
        item = draw(_rlp_edit(item))
    return prefix + rlp.encode(item)


@st.composite
def rlp_scrambled(
    draw: st.DrawFn, valid: st.SearchStrategy[bytes], prefix_size: int = 0
) -> bytes:
    """A valid encoding with 1..2 RLP strings replaced by random bytes of the same length.

    The shape survives, so the result still deserializes: what must refuse it are the rules
    behind the structure (signatures, roots, seals, ranges).
    """
    data = draw(valid)
    prefix, item = data[:prefix_size], rlp.decode(data[prefix_size:])
    leaves = [path for path in _paths(item) if isinstance(_at(item, path), bytes)]
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(leaves))
        parent = _at(item, path[:-1])
        size = len(parent[path[-1]])
        parent[path[-1]] = draw(st.binary(min_size=size, max_size=size))
    return prefix + rlp.encode(item)


def _at(item: Any, path: tuple[int, ...]) -> Any:
    for index in path:
        item = item[index]
    return item


# -- JSON ---------------------------------------------------------------------------------

#: Integers JSON can carry that break naive code: beyond int64, uint256, float precision.
HUGE_INTEGERS = (2**31, 2**32, 2**53 + 1, 2**63, 2**64, 2**256, 2**256 + 1, -(2**255), 10**300)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_INTEGERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)

json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=12,
)


def nested(depth: int, leaf: str = "0") -> str:
    """JSON text of `depth` nested arrays around `leaf`."""
    return "[" * depth + leaf + "]" * depth


def refusal_kind(error: Exception) -> str:
    """An error message with its values cut off, for `hypothesis.event` statistics: shows
    which rules the generated inputs reached."""
    words = str(error).split()
    return " ".join(
        word for word in words[:4] if not any(ch.isdigit() or ch in "'\"" for ch in word)
    )
