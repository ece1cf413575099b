"""The generated event decoders decide exactly as cattrs' structuring does, on every type.

Loading a record turns each stored row's JSON into its event through a decoder written per
event class (``serialization._decoder``), not through cattrs' hooks: here both read the same
data, valid and corrupted, and must accept the same (equal events with values of the same
types) and refuse the same. A corrupted row must still be a ``CorruptionError`` naming the
record and version when a store loads it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import Enum
from functools import partial
from pathlib import Path
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
from itsmcore.storage import _core as core
from itsmcore.storage._core import EventRow, decode, encode, seal
from itsmcore.storage.sqlite import _checked

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
    except ser.DECODE_ERRORS:
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
def test_a_sqlite_load_checks_each_row_against_seal(
    kind: str, record_id: str, version: int, type_: str, schema: int, at: int, by: str, data: str
) -> None:
    row = EventRow(version, type_, schema, at, by, data)
    stored = seal(kind, record_id, row)
    tampered = f"{(int(stored, 16) + 1) % 2**32:08x}"
    checked = _checked(kind, record_id, [(*row[:6], stored), (*row[:6], tampered)])
    assert checked == [row, row._replace(intact=False)]
    assert [r.intact for r in checked] == [True, False]


# ---------------------------------------------------------------------------- orjson


@contextlib.contextmanager
def parser(loads: Any) -> Iterator[None]:
    """Rows read with ``loads`` as the fast parser (``None``: the standard library's only)."""
    saved = core._fast_loads
    core._fast_loads = loads
    try:
        yield
    finally:
        core._fast_loads = saved


def row_outcome(name: str, row: EventRow) -> object:
    """What a store makes of a row: the event, typed part by part, or the error's text."""
    try:
        return _typed(decode("kinds", "ID1", row))
    except CorruptionError as exc:
        return ("corrupt", exc.version, str(exc))


class RawJson(str):
    """Text spliced into a row's JSON as it is (not as a JSON string)."""

    __slots__ = ()


# Text orjson reads otherwise than json, or not at all: whole numbers beyond 64 bits (floats
# in orjson), NaN and infinities, numbers beyond a double, lone surrogates, deep nesting.
_ODD = st.sampled_from(
    [2**64, 2**64 + 1, -(2**63) - 1, 10**30, float("nan"), float("inf"), "\ud800", "a\udfffb"]
) | st.sampled_from(["1e400", "-1e400", "[" * 2000 + "]" * 2000, "NaN", '"\\ud800"']).map(RawJson)


def _text(data: object, *, ascii_only: bool = True) -> str:
    """``data`` as JSON the way the stores write it, with any ``RawJson`` spliced in raw."""
    raws: list[str] = []

    def mark(value: object) -> object:
        if isinstance(value, RawJson):
            raws.append(str(value))
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        return value

    text = json.dumps(mark(data), ensure_ascii=ascii_only)
    for k, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{k}\x00"), raw)
    return text


@st.composite
def odd_rows(draw: st.DrawFn, name: str) -> EventRow:
    """A stored row of type ``name``, its data valid, corrupted or odd for a JSON parser."""
    cls = event_types()[name]
    data = draw(stored(cls) | corrupted(cls))
    if isinstance(data, dict) and data and draw(st.booleans()):
        names = [f.name for f in fields_of(cls)]
        data[draw(st.sampled_from([*names, "extra"]))] = draw(_ODD)
    text = _text(data, ascii_only=draw(st.booleans()))
    how = draw(st.sampled_from(["as is", "as is", "cut", "trailing", "spaces"]))
    if how == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "trailing":
        text += draw(st.sampled_from([" ", "x", "}", "\n", "\x00"]))
    elif how == "spaces":
        text = f" \n{text}\t "
    at = data.get("at") if isinstance(data, dict) else None
    try:
        us = core.to_us(datetime.fromisoformat(at)) if isinstance(at, str) else 0
    except ValueError:
        us = 0
    by = data.get("by") if isinstance(data, dict) else None
    return EventRow(1, name, cls.schema_version, us, by if isinstance(by, str) else "x", text)


@pytest.mark.parametrize("name", TYPES)
@settings(max_examples=20)  # for each of the 70-odd types
@given(st.data())
def test_orjson_and_json_read_every_row_alike(name: str, data: st.DataObject) -> None:
    orjson = pytest.importorskip("orjson")
    row = data.draw(odd_rows(name))
    with parser(orjson.loads):
        fast = row_outcome(name, row)
    with parser(None):
        slow = row_outcome(name, row)
    assert repr(fast) == repr(slow)  # repr: NaN is not equal to itself


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("impact", RawJson(str(2**64))),  # orjson: a float; json: an int, not a level
        ("title", RawJson(str(2**64 + 1))),
        ("impact", RawJson("NaN")),
        ("title", "\ud800"),  # a lone surrogate: json reads it, orjson refuses it
        ("extra", RawJson(str(-(2**63) - 1))),  # an unknown key: ignored by both
    ],
)
def test_what_orjson_reads_otherwise_is_decided_by_json(field: str, value: object) -> None:
    orjson = pytest.importorskip("orjson")
    t = datetime(2025, 3, 3, 9, tzinfo=UTC)
    opened = Incident.open(
        id="INC1", title="VPN down", caller="mia", impact=2, urgency=2, at=t, by="desk"
    ).history[0]
    row = encode(1, opened)
    row = row._replace(data=_text({**json.loads(row.data), field: value}))
    with parser(orjson.loads):
        fast = row_outcome("incident.opened", row)
    with parser(None):
        slow = row_outcome("incident.opened", row)
    assert repr(fast) == repr(slow)


def test_whole_numbers_beyond_64_bits_keep_their_value() -> None:
    """A float field given a huge whole number: json's int, made a float, not orjson's."""
    orjson = pytest.importorskip("orjson")
    name = "change.risk_assessed"
    cls = event_types()[name]
    data = {"at": "2025-03-03T09:00:00+00:00", "by": "cab", "state": "assessed"}
    data.update({f.name: "low" for f in fields_of(cls) if f.name not in data})
    score = next(f.name for f in fields_of(cls) if f.type is float)
    text = _text({**data, score: RawJson(str(2**64 + 1))})
    row = EventRow(1, name, cls.schema_version, core.to_us(datetime(2025, 3, 3, 9, tzinfo=UTC)),
                   "cab", text)  # fmt: skip
    assert ser.exact_decoder(name, cls.schema_version) is None  # json reads it
    with parser(orjson.loads):
        fast = row_outcome(name, row)
    with parser(None):
        assert repr(fast) == repr(row_outcome(name, row))


def test_the_fast_path_reads_an_incident_through_orjson() -> None:
    orjson = pytest.importorskip("orjson")
    t = datetime(2025, 3, 3, 9, tzinfo=UTC)
    incident = Incident.open(
        id="INC1", title="VPN down", caller="mia", impact=2, urgency=2, at=t, by="desk"
    ).assign(group="net", assignee="sam", at=t, by="desk")
    with parser(orjson.loads):
        for version, event in enumerate(incident.history, start=1):
            assert core._fast(encode(version, event)) == event


def test_exact_decoders_are_those_that_check_every_field_themselves() -> None:
    assert ser.exact_decoder("incident.opened", 2) is not None
    assert ser.exact_decoder("incident.assigned", 1) is not None  # tuple[str, ...] too
    assert ser.exact_decoder("incident.opened", 1) is None  # an upcast reads version 1
    assert ser.exact_decoder("change.risk_assessed", 1) is None  # a float: cattrs' hook
    assert ser.exact_decoder("problem.updated", 1) is None  # nested classes: cattrs'
    assert ser.exact_decoder("no.such.type", 1) is None


def test_the_core_imports_and_stores_without_orjson(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["orjson"] = None  # as if it were not installed
        from datetime import UTC, datetime
        from itsmcore import Incident
        from itsmcore.storage import SQLiteStore, _core
        assert _core._fast_loads is None
        t = datetime(2025, 3, 3, 9, tzinfo=UTC)
        inc = Incident.open(id="INC1", title="VPN down", caller="mia", impact=2,
                            urgency=2, at=t, by="desk").start(at=t, by="sam")
        store = SQLiteStore({str(tmp_path / "s.sqlite3")!r})
        with store.unit_of_work() as uow:
            uow.incidents.add(inc)
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.incidents.get("INC1") == inc
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


# ---------------------------------------------------------------------------- positional init


def test_every_event_class_is_built_with_its_fields_by_position() -> None:
    for name, cls in event_types().items():
        generated = ser._decoder(cls)
        assert generated.__globals__["_init"] is not cls.__init__, name


def test_only_an_init_taking_exactly_those_keywords_is_made_positional() -> None:
    def init(self: object, *, a: int, b: int) -> None:
        self.seen = (a, b)  # type: ignore[attr-defined]

    def star(self: object, *args: int, a: int, b: int) -> None: ...

    def more(self: object, *, a: int, b: int, c: int = 0) -> None: ...

    assert ser._positional(init, ["b", "a"]) is None  # another order
    assert ser._positional(init, ["a"]) is None
    assert ser._positional(star, ["a", "b"]) is None
    assert ser._positional(more, ["a", "b"]) is None
    assert ser._positional(len, ["a", "b"]) is None
    positional = ser._positional(init, ["a", "b"])
    obj = types.SimpleNamespace()
    positional(obj, 1, 2)
    assert obj.seen == (1, 2)
