"""miner/datasets.py: `decode_dataset` refuses every non-canonical encoding with
DatasetFormatError only, and every dataset survives encode -> decode."""
from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from miner.datasets import (
    _HEADER,
    DATASET_MAGIC,
    DATASET_VERSION,
    HEADER_SIZE,
    MAX_FEATURES,
    MAX_SAMPLES,
    Dataset,
    DatasetFormatError,
    dataset_digest,
    decode_dataset,
    encode_dataset,
)
from tests.properties.mutations import mutated, refusal_kind, region_mutated


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    """Small datasets: any shape, label range and salt, sometimes an image shape."""
    n, d = draw(st.integers(1, 8)), draw(st.integers(1, 12))
    num_classes = draw(st.integers(2, 256))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image_shape = draw(st.sampled_from([None, (1, 1, d), (d, 1, 1)]))
    return Dataset(
        features=rng.integers(0, 256, size=(n, d)),
        labels=rng.integers(0, num_classes, size=n),
        num_classes=num_classes,
        salt=draw(st.binary(min_size=32, max_size=32)),
        image_shape=image_shape,
    )


encodings = datasets().map(encode_dataset)

# Header fields at and beyond their limits; a decoder must check them before it allocates.
sizes = st.one_of(
    st.integers(0, 16), st.sampled_from([MAX_SAMPLES, MAX_SAMPLES + 1, MAX_FEATURES + 1, 2**32 - 1])
)
u16 = st.one_of(st.integers(0, 4), st.sampled_from([255, 256, 257, 2**16 - 1]))


@st.composite
def forged_headers(draw: st.DrawFn) -> bytes:
    """A header with chosen field values and a body of any length around the one it implies."""
    n, d = draw(sizes), draw(sizes)
    header = _HEADER.pack(
        draw(st.sampled_from([DATASET_MAGIC, b"PLDT"])),
        draw(st.sampled_from([DATASET_VERSION, 0, 2, 255])),
        n, d, draw(u16), draw(u16), draw(u16), draw(u16), bytes(32),
    )
    implied = n * d + n
    if implied > 4096:  # a header that passes the limits still needs a body this long
        implied = 0
    length = max(0, implied + draw(st.integers(-2, 2)))
    return header + draw(st.binary(min_size=length, max_size=length))


def decode_or_refuse(data: bytes) -> Dataset | None:
    try:
        dataset = decode_dataset(data)
    except DatasetFormatError as error:
        event(f"refused: {refusal_kind(error)}")
        return None
    event("decoded")
    assert encode_dataset(dataset) == data  # one dataset, one encoding
    return dataset


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_dataset_format_error(data):
    decode_or_refuse(data)


@settings(max_examples=300)
@given(forged_headers())
def test_forged_headers_raise_only_dataset_format_error(data):
    decode_or_refuse(data)


@settings(max_examples=300)
@given(st.one_of(mutated(encodings), region_mutated(encodings, HEADER_SIZE)))
def test_mutants_of_valid_datasets_raise_only_dataset_format_error(data):
    decode_or_refuse(data)


@settings(max_examples=100)
@given(datasets())
def test_datasets_round_trip(dataset):
    decoded = decode_dataset(encode_dataset(dataset))
    assert dataset_digest(decoded) == dataset_digest(dataset)
    assert np.array_equal(decoded.features, dataset.features)
    assert np.array_equal(decoded.labels, dataset.labels)
    assert (decoded.num_classes, decoded.salt, decoded.image_shape) == (
        dataset.num_classes, dataset.salt, dataset.image_shape,
    )
