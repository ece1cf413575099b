"""The generated event decoders decide exactly as cattrs' structuring does, on every type.

Loading a record turns each stored row's JSON into its event through a decoder written per
event class (``serialization._decoder``), not through cattrs' hooks: here both read the same
data, valid and corrupted, and must accept the same (equal events with values of the same
types) and refuse the same. A corrupted row must still be a ``CorruptionError`` naming the
record and version when a store loads it.
"""

from __future__ import annotations

import json
import types
import typing
from datetime import UTC, datetime
from enum import Enum
from functools import partial
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itsmcore import Incident
from itsmcore import serialization as ser
from itsmcore.errors import CorruptionError, ValidationError
from itsmcore.events import Event, event_types
from itsmcore.priority import Level
from itsmcore.storage._core import EventRow, decode, encode, seal, sealer

TYPES = sorted(event_types())

# ---------------------------------------------------------------------------- data


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
_actors = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=8)
_moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def valid(kind: Any) -> st.SearchStrategy[Any]:
    """Values of ``kind`` as the stores write them (what ``json.loads`` gives back)."""
    if kind is str:
        return st.text(max_size=8)
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(-(2**40), 2**40)
    if kind is float:
        return st.floats(allow_nan=False)
    if kind is datetime:
        return _moments.map(datetime.isoformat)
    if isinstance(kind, type) and issubclass(kind, Level):
        members = st.sampled_from(list(kind))
        return members.map(lambda m: m.value) | members.map(lambda m: f"{kind.__name__}:{m.value}")
    if isinstance(kind, type) and issubclass(kind, Enum):
        return st.sampled_from([m.value for m in kind])
    if attrs.has(kind):
        attrs.resolve_types(kind)
        return st.fixed_dictionaries({f.name: valid(f.type) for f in attrs.fields(kind)})
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        return st.none() | st.one_of([valid(a) for a in args if a is not type(None)])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(valid(args[0]), max_size=3)
    if origin is tuple:
        return st.tuples(*(valid(a) for a in args)).map(list)
    raise AssertionError(f"no strategy for {kind!r}: add one")  # a new field type: cover it


def _inner(kind: Any) -> Any:
    """The class inside ``tuple[X, ...]`` or ``X | None``."""
    args = [a for a in typing.get_args(kind) if a not in (type(None), Ellipsis)]
    return _inner(args[0]) if len(args) == 1 else kind


def fields_of(cls: type[Event]) -> tuple[attrs.Attribute[Any], ...]:
    attrs.resolve_types(cls)
    return attrs.fields(cls)


@st.composite
def stored(draw: st.DrawFn, cls: type[Event]) -> dict[str, Any]:
    """An event's data as a store holds it: every field, the defaulted ones not always."""
    data = {}
    for f in fields_of(cls):
        if f.default is not attrs.NOTHING and draw(st.booleans()):
            continue
        strategy = {"at": _moments.map(datetime.isoformat), "by": _actors}.get(f.name)
        data[f.name] = draw(valid(f.type) if strategy is None else strategy)
    return json.loads(json.dumps(data))


@st.composite
def corrupted(draw: st.DrawFn, cls: type[Event]) -> object:
    """Stored data with something wrong: a value replaced, a field lost, a key added…"""
    data = draw(stored(cls))
    names = [f.name for f in fields_of(cls)]
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["junk", "near", "swap", "drop", "extra", "whole", "naive"]))
        name = draw(st.sampled_from(names))
        if how == "junk":
            data[name] = draw(_json)
        elif how == "near":  # a small number, a level's name, another enum's value
            data[name] = draw(st.integers(-1, 9) | st.sampled_from(_NEAR))
        elif how == "swap":  # a value another field would hold: 42 for "42", "yes" for True
            other = draw(st.sampled_from(fields_of(cls)))
            data[name] = draw(valid(other.type))
        elif how == "drop":
            data.pop(name, None)
        elif how == "extra":
            data[draw(st.text(max_size=6))] = draw(_json)
        elif how == "naive":
            data["at"] = draw(st.datetimes()).isoformat()
        else:
            return draw(_json)
    return json.loads(json.dumps(data))


_ENUMS = {
    e
    for cls in event_types().values()
    for f in fields_of(cls)
    if isinstance(e := _inner(f.type), type) and issubclass(e, Enum)
}
# Values a field of another type holds: a level's number, another enum's value, a time.
_NEAR = sorted(
    {str(m.value) for e in _ENUMS for m in e}
    | {"Impact:9", "Priority:2", "Nope:1", "", "true", "2025-03-03T09:00:00"}
)


# ---------------------------------------------------------------------------- comparing


def _typed(value: object) -> object:
    """A value with the type of every part: Impact(2) == 2 and True == 1, but not here."""
    if isinstance(value, tuple):
        return (tuple, tuple(_typed(v) for v in value))
    if attrs.has(type(value)):
        return (
            type(value),
            tuple(_typed(getattr(value, f.name)) for f in attrs.fields(type(value))),
        )
    return (type(value), value)


def outcome(decoder: Any, data: object) -> object:
    """What a decoder makes of ``data``: the event, typed part by part, or ``"refused"``."""
    try:
        event = decoder(data)
    except ser._MISFITS:
        return "refused"
    return _typed(event)


def both(cls: type[Event], data: object) -> tuple[object, object]:
    generated = ser._decoder(cls)
    assert not isinstance(generated, partial), f"{cls.type} fell back to cattrs"
    cattrs_path = partial(ser._converter.structure, cl=cls)
    return outcome(generated, data), outcome(cattrs_path, data)


@pytest.mark.parametrize("name", TYPES)
@settings(max_examples=20)  # for each of the 70-odd types
@given(st.data())
def test_valid_data_decodes_to_the_same_event(name: str, data: st.DataObject) -> None:
    cls = event_types()[name]
    fields = data.draw(stored(cls))
    ours, theirs = both(cls, fields)
    assert ours == theirs
    if not any(attrs.has(_inner(f.type)) for f in fields_of(cls)):
        # What the stores write is accepted (the strategy does not know the validators of
        # nested classes, such as a change's approval levels: those may be refused, alike).
        assert ours != "refused", fields


@pytest.mark.parametrize("name", TYPES)
@settings(max_examples=20)  # for each of the 70-odd types
@given(st.data())
def test_corrupted_data_is_refused_as_cattrs_refuses_it(name: str, data: st.DataObject) -> None:
    cls = event_types()[name]
    fields = data.draw(corrupted(cls))
    ours, theirs = both(cls, fields)
    assert ours == theirs
    if ours == "refused":  # and through the public path, a ValidationError
        with pytest.raises(ValidationError, match="does not fit"):
            ser.event_from_data(name, cls.schema_version, fields)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", 42),  # 42 is not "42"
        ("priority_overridden", "no"),  # "no" is not False
        ("priority_overridden", 0),
        ("impact", True),
        ("impact", "2"),
        ("impact", 7),  # no such level
        ("service", ["a"]),
        ("at", 1741000000),
        ("at", "2025-03-03T09:00:00"),  # naive
        ("by", ""),
    ],
)
def test_a_stored_value_of_another_type_is_corruption_naming_the_row(
    field: str, value: object
) -> None:
    t = datetime(2025, 3, 3, 9, tzinfo=UTC)
    opened = Incident.open(
        id="INC1", title="VPN down", caller="mia", impact=2, urgency=2, at=t, by="desk"
    ).history[0]
    row = encode(1, opened)
    data = json.loads(row.data)
    data[field] = value
    with pytest.raises(CorruptionError, match=r"INC1.*stored event 1") as error:
        decode("incidents", "INC1", row._replace(data=json.dumps(data)))
    assert error.value.record_id == "INC1"
    assert error.value.version == 1
    del data[field]
    with pytest.raises(CorruptionError, match="does not fit"):
        decode("incidents", "INC1", row._replace(data=json.dumps(data)))


def test_extra_keys_are_ignored_as_before() -> None:
    t = datetime(2025, 3, 3, 9, tzinfo=UTC)
    opened = Incident.open(
        id="INC1", title="VPN down", caller="mia", impact=2, urgency=2, at=t, by="desk"
    ).history[0]
    row = encode(1, opened)
    data = {**json.loads(row.data), "added_by_a_later_release": 1}
    assert decode("incidents", "INC1", row._replace(data=json.dumps(data))) == opened


# ---------------------------------------------------------------------------- seals


@given(
    st.text(max_size=8),
    st.text(max_size=8),
    st.integers(1, 10**6),
    st.text(max_size=8),
    st.integers(0, 9),
    st.integers(-(2**62), 2**62),
    st.text(max_size=8),
    st.text(max_size=20),
)
def test_a_kinds_sealer_seals_as_seal_does(
    kind: str, record_id: str, version: int, type_: str, schema: int, at: int, by: str, data: str
) -> None:
    row = EventRow(version, type_, schema, at, by, data)
    assert sealer(kind, record_id)(version, type_, schema, at, by, data) == seal(
        kind, record_id, row
    )
