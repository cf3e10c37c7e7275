"""miner/model_spec.py: `model_spec_from_json`, `model_spec_from_obj` and the shape
validators refuse every bad spec with ModelSpecError only (random JSON, deep nesting, huge
numbers, NaN), and every spec they accept has one canonical form that parses back to it."""
from __future__ import annotations

import copy
import json

import pytest

import eth  # noqa: F401  (py-evm raises the recursion limit to 100,000, as in a node)
from hypothesis import event, given, settings
from hypothesis import strategies as st

from miner.model_spec import (
    MAX_SPEC_JSON_BYTES,
    PADDINGS,
    PREDEFINED_MODELS,
    Conv2d,
    Dense,
    Flatten,
    MaxPool2d,
    ModelSpec,
    ModelSpecError,
    ReLU,
    build_spec,
    macs_per_sample,
    model_spec_canonical_bytes,
    model_spec_from_json,
    model_spec_from_obj,
    model_spec_to_obj,
)
from tests.properties.mutations import HUGE_INTEGERS, json_values, mutated, nested, refusal_kind

IMAGE_SHAPES = ((1, 8, 8), (3, 4, 4), (2, 6, 5))


@st.composite
def predefined_specs(draw: st.DrawFn) -> ModelSpec:
    name = draw(st.sampled_from(PREDEFINED_MODELS))
    classes = draw(st.integers(2, 12))
    if name == "cnn":
        shape = draw(st.sampled_from(IMAGE_SHAPES))
        return build_spec(name, shape[0] * shape[1] * shape[2], classes, shape)
    return build_spec(name, draw(st.integers(1, 64)), classes)


small = st.integers(-1, 12)
layer = st.one_of(
    st.builds(Dense, small),
    st.just(ReLU()),
    st.builds(Conv2d, small, small, st.sampled_from(PADDINGS + ("full",))),
    st.builds(MaxPool2d, small),
    st.just(Flatten()),
)


@st.composite
def built_specs(draw: st.DrawFn) -> tuple:
    """Random layer stacks over small inputs, often closed by flatten + dense(classes) so
    that some are valid; the rest break one shape rule or another."""
    shape = draw(st.one_of(st.tuples(st.integers(0, 80)), st.tuples(small, small, small), st.tuples(small, small)))
    classes = draw(st.integers(0, 12))
    layers = draw(st.lists(layer, max_size=5))
    if draw(st.booleans()):
        layers += [Flatten()] if len(shape) == 3 and draw(st.booleans()) else []
        layers.append(Dense(classes))
    return shape, classes, layers


def parse_or_refuse(text: bytes | str) -> ModelSpec | None:
    """model_spec_from_json; a refusal is a ModelSpecError, an accepted spec round-trips."""
    try:
        spec = model_spec_from_json(text)
    except ModelSpecError as error:
        event(f"refused: {refusal_kind(error)}")
        return None
    event("parsed")
    canonical = model_spec_canonical_bytes(spec)
    assert model_spec_from_json(canonical, require_canonical=True) == spec
    raw = text.encode() if isinstance(text, str) else text
    if raw != canonical:
        try:
            model_spec_from_json(text, require_canonical=True)
        except ModelSpecError:
            pass
        else:
            raise AssertionError("require_canonical accepted non-canonical bytes")
    return spec


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_arbitrary_bytes_and_text_raise_only_model_spec_error(text):
    parse_or_refuse(text)


@settings(max_examples=200)
@given(json_values)
def test_arbitrary_json_raises_only_model_spec_error(value):
    parse_or_refuse(json.dumps(value))  # NaN and Infinity become JSON's NaN/Infinity tokens


def _paths(value, prefix=()):
    """Every position in a JSON value (dict keys and list indices), the root included."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _paths(child, prefix + (key,))


_replacements = st.one_of(
    json_values,
    st.sampled_from(HUGE_INTEGERS),
    st.sampled_from([-1, 0, 1, 2, True, False, None, 1.0, float("nan"), float("inf"), "same", []]),
)


@st.composite
def mutated_spec_json(draw: st.DrawFn) -> str:
    """A valid spec with one value replaced, removed or added, in JSON of any formatting."""
    obj = model_spec_to_obj(draw(predefined_specs()))
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(list(_paths(obj))))
        if not path:
            continue
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        kind = draw(st.sampled_from(("replace", "replace", "remove", "add")))
        if kind == "replace":
            parent[path[-1]] = draw(_replacements)
        elif kind == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(("units", "type", "extra", "padding")))] = draw(_replacements)
        else:
            parent.insert(path[-1], copy.deepcopy(draw(_replacements)))
    return json.dumps(obj, sort_keys=draw(st.booleans()), indent=draw(st.sampled_from([None, 1])))


@settings(max_examples=300)
@given(mutated_spec_json())
def test_mutated_valid_specs_raise_only_model_spec_error(text):
    parse_or_refuse(text)


@settings(max_examples=200)
@given(mutated(predefined_specs().map(model_spec_canonical_bytes)))
def test_byte_mutants_of_canonical_specs_raise_only_model_spec_error(text):
    parse_or_refuse(text)


@settings(max_examples=30)
@given(st.integers(1, MAX_SPEC_JSON_BYTES // 2), st.sampled_from(["input_shape", "layers", "version"]))
def test_deep_nesting_raises_only_model_spec_error(depth, key):
    """Nesting anywhere in a spec is a ModelSpecError (hypothesis runs a test under its own
    recursion limit; the next test checks the node's limit)."""
    template = '{"version":1,"input_shape":[8],"num_classes":2,"layers":[{"type":"dense","units":2}]}'
    field = f'"{key}":'
    head, tail = template.split(field, 1)
    value_end = tail.index(",") if key == "version" else tail.index("]") + 1
    budget = max(1, (MAX_SPEC_JSON_BYTES - len(template)) // 2)
    text = head + field + nested(min(depth, budget), tail[:value_end]) + tail[value_end:]
    parse_or_refuse(text)
    parse_or_refuse(nested(depth))


@settings(max_examples=300)
@given(built_specs())
def test_shape_validators_raise_only_model_spec_error(fields):
    shape, classes, layers = fields
    try:
        spec = ModelSpec(shape, classes, tuple(layers))
    except ModelSpecError as error:
        event(f"refused: {refusal_kind(error)}")
        return
    event("valid")
    assert macs_per_sample(spec) >= 0
    assert model_spec_from_json(model_spec_canonical_bytes(spec), require_canonical=True) == spec


@settings(max_examples=150)
@given(st.dictionaries(st.sampled_from(["version", "input_shape", "num_classes", "layers"]), json_values))
def test_spec_objects_with_arbitrary_field_values_raise_only_model_spec_error(obj):
    try:
        model_spec_from_obj(obj)
    except ModelSpecError as error:
        event(f"refused: {refusal_kind(error)}")


def test_nesting_as_deep_as_the_size_limit_allows_under_the_nodes_recursion_limit():
    """py-evm raises the recursion limit to 100,000, so only the size bound keeps json from
    recursing past the C stack; the refusal names the value briefly, not in 16 KiB."""
    import sys

    assert sys.getrecursionlimit() >= 100_000
    depth = (MAX_SPEC_JSON_BYTES - 1) // 2
    for text in (nested(depth), '{"version":' + nested(depth - 60, "1") + "}"):
        with pytest.raises(ModelSpecError) as refused:
            model_spec_from_json(text)
        assert len(str(refused.value)) < 200
