"""miner/datasets.py, version-2 encodings (a quantisation section): every mutant raises only
DatasetFormatError or decodes to a dataset that re-encodes to the same bytes, and any
quantisation the format allows survives encode -> decode bit for bit."""
from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from miner.datasets import (
    HEADER_SIZE,
    ROUNDINGS,
    Dataset,
    DatasetFormatError,
    FeatureQuantization,
    decode_dataset,
    encode_dataset,
)
from tests.properties.mutations import mutated, refusal_kind, region_mutated

finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def quantized_datasets(draw: st.DrawFn) -> Dataset:
    n, d = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    quantization = FeatureQuantization(
        draw(st.lists(finite, min_size=d, max_size=d)),
        draw(st.lists(finite.map(abs), min_size=d, max_size=d)),
        draw(st.sampled_from(sorted(ROUNDINGS.values()))),
    )
    return Dataset(rng.integers(0, 256, (n, d)), rng.integers(0, 2, n), num_classes=2,
                   quantization=quantization)


encodings = quantized_datasets().map(encode_dataset)


@settings(max_examples=300)
@given(st.one_of(mutated(encodings), region_mutated(encodings, HEADER_SIZE + 17)))  # + rounding, a low
def test_mutants_of_quantized_datasets_raise_only_dataset_format_error(data):
    try:
        dataset = decode_dataset(data)
    except DatasetFormatError as error:
        event(f"refused: {refusal_kind(error)}")
        return
    event("decoded")
    assert encode_dataset(dataset) == data


@settings(max_examples=100)
@given(quantized_datasets(), st.lists(finite, min_size=1, max_size=8))
def test_quantizations_round_trip_and_apply_in_range(dataset, row):
    back = decode_dataset(encode_dataset(dataset)).quantization
    assert back.rounding == dataset.quantization.rounding
    assert back.low.tobytes() == dataset.quantization.low.tobytes()
    assert back.span.tobytes() == dataset.quantization.span.tobytes()
    raw = np.resize(np.array(row), (3, dataset.d))
    features = back.apply(raw)
    assert features.min() >= 0 and features.max() <= 255
    assert np.array_equal(features, dataset.quantization.apply(raw))
