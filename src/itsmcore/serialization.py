"""Records, events and SLA statuses as JSON-ready dicts, and back: the stores' own format.

One format, documented in ``docs/storage.md``, used by every store and by applications that
send records over the wire or keep them elsewhere:

- an **event** is its fields (datetimes as ISO 8601 strings in UTC, enums as their values,
  levels of the default scales as numbers and of a desk's own scales as ``"Scale:number"``)
  plus ``"type"`` and ``"schema_version"``;
- a **record** is ``{"kind", "id", "version", "workflow", "history": [events]}``: the history
  is the record, and loading replays it (on the workflow registered under that name);
- an **SLA status** is its figures, durations as integer microseconds.

>>> from datetime import UTC, datetime
>>> from itsmcore import Incident
>>> t = datetime(2025, 3, 3, 9, tzinfo=UTC)
>>> inc = Incident.open(id="INC1", title="VPN down", caller="mia", impact=1, urgency=2,
...                     at=t, by="desk").start(at=t, by="sam")
>>> data = to_dict(inc)
>>> data["kind"], data["version"], data["workflow"]
('incident', 2, 'incident')
>>> data["history"][1]  # doctest: +NORMALIZE_WHITESPACE
{'at': '2025-03-03T09:00:00+00:00', 'by': 'sam', 'state': 'in_progress',
 'type': 'incident.started', 'schema_version': 1}
>>> record_from_dict(data) == inc
True
"""

from __future__ import annotations

import linecache
from datetime import datetime, timedelta
from enum import Enum
from fractions import Fraction
from functools import partial
from inspect import CO_VARARGS, CO_VARKEYWORDS
from types import FunctionType
from typing import TYPE_CHECKING, Any, Final

import attrs
import cattrs

from itsmcore.errors import ValidationError
from itsmcore.events import Event, event_type, event_types
from itsmcore.priority import Impact, Level, Priority, Urgency
from itsmcore.record import Record, record_class, storable
from itsmcore.sla import CycleStatus, SLAStage, SLAStatus

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "event_data",
    "event_from_data",
    "event_from_dict",
    "record_from_dict",
    "status_from_dict",
    "to_dict",
]

# Without detailed validation cattrs structures about a third faster; errors name the row
# and the event type themselves. Its default structuring coerces (42 becomes "42", "no"
# becomes True): data is taken only as the types the events declare.
_converter = cattrs.Converter(detailed_validation=False)
_converter.register_unstructure_hook(datetime, lambda d: d.isoformat())


def _exact(kind: type) -> Any:
    """Structure ``kind`` (or an enum of it, such as a StrEnum) only from a ``kind`` value."""

    def structure(value: object, target: type) -> object:
        if type(value) is target:  # a member already (to_dict's data, not through JSON)
            return value
        if type(value) is not kind:
            raise TypeError(f"{value!r} is not a {kind.__name__}")
        return value if target is kind else target(value)

    return structure


def _datetime(value: object, _type: type) -> datetime:
    if type(value) is not str:
        raise TypeError(f"{value!r} is not an ISO datetime")
    return datetime.fromisoformat(value)


_STRICT: Final = {kind: _exact(kind) for kind in (str, int, bool)}
for _kind, _hook in _STRICT.items():
    # A class hook: it serves the StrEnum and IntEnum fields too (they subclass these).
    _converter.register_structure_hook(_kind, _hook)
_converter.register_structure_hook(datetime, _datetime)


def _unstructure_level(level: Level) -> int | str:
    """A level as stored: its number on the default scales, ``"Scale:number"`` on others.

    Rows written before custom scales hold numbers, and still read as the default scales.
    """
    if type(level) in _PLAIN_SCALES:
        return level.value
    return f"{type(level).__name__}:{level.value}"


def _structure_level(value: object, target: type[Level]) -> Level:
    if type(value) is int:
        return target(value)
    if type(value) is str and ":" in value:
        name, _, number = value.rpartition(":")
        if number.isdigit():
            return Level.scale(name)(int(number))
    raise TypeError(f"{value!r} is not a level")


_PLAIN_SCALES: Final = frozenset({Impact, Urgency, Priority})
_converter.register_unstructure_hook(Level, _unstructure_level)
_converter.register_structure_hook(Level, _structure_level)


def _storable_strings(value: object, where: str) -> None:
    """Every string in an event's data is one every store keeps (see ``record.storable``)."""
    if isinstance(value, str):
        storable(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable_strings(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            _storable_strings(item, where)


# --------------------------------------------------------------------------- decoders

# What cattrs' structuring can raise for data that does not fit (its strict hooks and the
# event's own converters raise ValueError/TypeError, a missing field KeyError).
DECODE_ERRORS: Final = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    RecursionError,
    cattrs.BaseValidationError,
)


def _refuse(value: object, kind: str) -> TypeError:
    return TypeError(f"{value!r} is not {kind}")


class _Decoder:
    """Writes one event class's decoder: the source of a function and the names it uses.

    The function does what ``_converter.structure(data, cls)`` does, field by field, with
    the hooks' checks written inline instead of called: a missing field is a ``KeyError``,
    a value of another type is refused as the hook refuses it (42 is not ``"42"``), unknown
    keys are ignored, fields with defaults are passed only when present, and the class is
    called with keywords so its own converters run. A value whose type has no inline check
    here goes through its cattrs hook, and data that is not a plain dict goes through
    cattrs whole. ``tests/test_decoders.py`` compares the two on every registered type.
    """

    def __init__(self, cls: type) -> None:
        self.names: dict[str, object] = {"_cls": cls, "_refuse": _refuse}
        self.lines: list[str] = []
        self.exact = True
        """Whether every field is checked inline: no value reaches a hook of cattrs."""

    def name(self, prefix: str, value: object) -> str:
        key = f"_{prefix}{len(self.names)}"
        self.names[key] = value
        return key

    def check(self, var: str, kind: Any, pad: str) -> None:
        """Lines that turn ``var`` (a field's stored value) into the field's value."""
        hook = _converter.get_structure_hook(kind)
        out = self.lines
        if hook is _STRICT[str] or hook is _STRICT[int] or hook is _STRICT[bool]:
            base = str if hook is _STRICT[str] else int if hook is _STRICT[int] else bool
            if kind is base:
                out.append(f"{pad}if type({var}) is not {base.__name__}:")
                out.append(f"{pad}    raise _refuse({var}, {'a ' + base.__name__!r})")
                return
            if not (isinstance(kind, type) and issubclass(kind, Enum)):
                self.call(var, kind, hook, pad)
                return
            out.append(f"{pad}if type({var}) is not {base.__name__}:")
            # An enum of str or int: a member passes, a plain value is looked up.
            target = self.name("t", kind)
            members = self.name("m", kind._value2member_map_)
            out.append(f"{pad}    if type({var}) is not {target}:")
            out.append(f"{pad}        raise _refuse({var}, {'a ' + base.__name__!r})")
            out.append(f"{pad}else:")
            out.append(f"{pad}    {var} = {members}.get({var}) or {target}({var})")
        elif hook is _structure_level and isinstance(kind, type) and issubclass(kind, Level):
            target = self.name("t", kind)
            members = self.name("m", kind._value2member_map_)
            structure = self.name("h", hook)
            out.append(f"{pad}if type({var}) is int:")
            out.append(f"{pad}    {var} = {members}.get({var}) or {target}({var})")
            out.append(f"{pad}else:")
            out.append(f"{pad}    {var} = {structure}({var}, {target})")
        elif hook is _datetime:
            parse = self.name("h", datetime.fromisoformat)
            out.append(f"{pad}if type({var}) is not str:")
            out.append(f"{pad}    raise _refuse({var}, 'an ISO datetime')")
            out.append(f"{pad}{var} = {parse}({var})")
        elif hook == _converter._structure_optional:  # noqa: SLF001 - the hook it is
            first, second = kind.__args__
            other = first if second is type(None) else second
            out.append(f"{pad}if {var} is not None:")
            self.check(var, other, pad + "    ")
        elif (
            hook == _converter._structure_tuple  # noqa: SLF001 - the hook it is
            and getattr(kind, "__args__", None) == (str, ...)
            and _converter.get_structure_hook(str) is _STRICT[str]
        ):
            # A list of strings as a tuple; anything else as cattrs takes it (any iterable).
            out.append(f"{pad}if type({var}) is list:")
            out.append(f"{pad}    for _e in {var}:")
            out.append(f"{pad}        if type(_e) is not str:")
            out.append(f"{pad}            raise _refuse(_e, 'a str')")
            out.append(f"{pad}    {var} = tuple({var})")
            out.append(f"{pad}else:")
            # Not a list: cattrs iterates it (a dict's keys, a string's characters) and keeps
            # no number of it, so the decoder stays exact (see exact_decoder).
            exact = self.exact
            self.call(var, kind, hook, pad + "    ")
            self.exact = exact
        else:
            self.call(var, kind, hook, pad)

    def call(self, var: str, kind: object, hook: object, pad: str) -> None:
        """The line that passes ``var`` through its cattrs hook, as cattrs would."""
        self.exact = False
        self.lines.append(f"{pad}{var} = {self.name('h', hook)}({var}, {self.name('t', kind)})")


def _build_decoder(cls: type[Event]) -> Any:
    """The generated decoder of ``cls`` (see ``_Decoder``), or cattrs' own for odd classes."""
    fields = attrs.fields(cls)
    if any(not f.init or f.alias != f.name for f in fields):
        return partial(_converter.structure, cl=cls)  # cattrs maps such fields itself
    code = _Decoder(cls)
    whole = code.name("h", partial(_converter.structure, cl=cls))
    code.lines += ["def decode(o):", "    if type(o) is not dict:", f"        return {whole}(o)"]
    # The order of cattrs' own: fields with defaults first, passed only if present (a plain
    # default passed is the same as none passed: attrs converts and validates it alike).
    optional = [(k, f) for k, f in enumerate(fields) if f.default is not attrs.NOTHING]
    plain = not any(isinstance(f.default, attrs.Factory) for _, f in optional)  # type: ignore[arg-type]
    if not plain:
        code.lines.append("    res = {}")
    for k, f in optional:
        code.lines += [f"    if {f.name!r} in o:", f"        v{k} = o[{f.name!r}]"]
        code.check(f"v{k}", f.type, "        ")
        if plain:
            code.lines += ["    else:", f"        v{k} = {code.name('d', f.default)}"]
        else:
            code.lines.append(f"        res[{f.name!r}] = v{k}")
    required = [(k, f) for k, f in enumerate(fields) if f.default is attrs.NOTHING]
    for k, f in required:
        code.lines.append(f"    v{k} = o[{f.name!r}]")
        code.check(f"v{k}", f.type, "    ")
    passed = sorted(required + optional, key=lambda kf: kf[0]) if plain else required
    arguments = [f"{f.name}=v{k}" for k, f in passed]
    called = plain and cls.__new__ is object.__new__ and type(cls).__call__ is type.__call__
    positional = _positional(cls.__init__, [f.name for _, f in passed]) if called else None
    if positional is not None:
        # What calling the class does, with the arguments in a row: a class call builds a
        # dict of its keywords, and so does any call with more than 14 of them (CPython
        # packs those into a dict); an incident's opening has 19 fields.
        code.names.update(_new=object.__new__, _init=positional)
        code.lines += [
            "    obj = _new(_cls)",
            f"    _init(obj, {', '.join(f'v{k}' for k, _ in passed)})",
            "    return obj",
        ]
    elif called:
        code.names.update(_new=object.__new__, _init=cls.__init__)
        code.lines += [
            "    obj = _new(_cls)",
            f"    _init({', '.join(['obj', *arguments])})",
            "    return obj",
        ]
    else:
        code.lines.append(f"    return _cls({', '.join([*arguments, '**res'])})")
    source = "\n".join(code.lines)
    filename = f"<itsmcore decoder {cls.__module__}.{cls.__qualname__}>"
    exec(compile(source, filename, "exec"), code.names)  # noqa: S102 - our own template
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    if code.exact:
        _checked_inline.add(cls)
    return code.names["decode"]


def _positional(init: Any, names: list[str]) -> Any:
    """``init`` taking ``names`` (its keyword-only parameters, in order) by position.

    The same code object with its keyword-only parameters counted as positional ones: the
    same body runs (the class's converters and validators), only the calling convention
    differs. ``None`` unless ``init`` is a plain function taking ``self`` and exactly those
    keywords, in that order, and nothing else.
    """
    code = getattr(init, "__code__", None)
    if not isinstance(init, FunctionType) or code is None:
        return None
    n = len(names)
    if (
        code.co_argcount != 1
        or code.co_posonlyargcount
        or code.co_kwonlyargcount != n
        or code.co_flags & (CO_VARARGS | CO_VARKEYWORDS)
        or code.co_varnames[1 : 1 + n] != tuple(names)
    ):
        return None
    code = code.replace(co_argcount=1 + n, co_kwonlyargcount=0)
    return FunctionType(code, init.__globals__, init.__name__, None, init.__closure__)


def _decoder(cls: type[Event]) -> Callable[[Any], Event]:
    """The decoder of ``cls``, written on first use (its type hints resolved then)."""
    decoder = _decoders.get(cls)
    if decoder is None:
        attrs.resolve_types(cls)
        try:
            decoder = _build_decoder(cls)
        except Exception:  # noqa: BLE001 - a type the template cannot read: cattrs decides
            decoder = partial(_converter.structure, cl=cls)
        _decoders[cls] = decoder
    return decoder


_decoders: dict[type, Callable[[Any], Any]] = {}
_checked_inline: set[type] = set()


def exact_decoder(type_name: str, schema_version: int) -> Callable[[Any], Event] | None:
    """The decoder of that event type and version if it checks every field itself.

    Such a decoder reads each field's value with its own inline check (``str``, ``int``,
    ``bool``, enum, level, datetime, or ``None`` for optional ones), all of which refuse a
    float; it raises one of ``DECODE_ERRORS`` for data that does not fit. ``None`` for a
    version to be upcast (an upcast reads the data as it likes), a class with a field read
    through cattrs, or a type unknown here. The stores read rows with orjson through these
    decoders only: orjson gives some whole numbers as floats where ``json`` gives ints, and
    an exact decoder refuses them rather than reading them as something else.
    """
    cls = event_types().get(type_name)
    if cls is None or schema_version != cls.schema_version:
        return None
    decoder = _decoder(cls)  # written (and kept) on first use
    return decoder if cls in _checked_inline else None


# --------------------------------------------------------------------------- events


def event_data(event: Event) -> dict[str, Any]:
    """An event's fields as JSON-ready data (``ValidationError`` for text no store keeps)."""
    data: dict[str, Any] = _converter.unstructure(event)
    _storable_strings(data, event.type)
    return data


def event_from_data(type_name: str, schema_version: int, data: object) -> Event:
    """The event of that type from its fields, upcast from an older schema version.

    Raises:
        ValidationError: an unknown type, a version without an upcast, or data that does
            not fit the event (a missing field, a value of another type).
    """
    cls = event_type(type_name)
    decoder = _decoder(cls)  # written (and kept) on first use
    if schema_version != cls.schema_version:
        upcast = getattr(cls, "upcast", None)
        if upcast is None:
            msg = (
                f"schema version {schema_version} of {type_name!r} cannot be read by this "
                f"release (version {cls.schema_version}); it needs an upcast"
            )
            raise ValidationError(msg)
        data = upcast(data, schema_version)
    try:
        event: Event = decoder(data)
    except DECODE_ERRORS as exc:
        msg = f"its data does not fit {type_name!r} ({str(exc)[:200]!r})"
        raise ValidationError(msg) from None
    return event


def event_from_dict(data: dict[str, Any]) -> Event:
    """The event :func:`to_dict` made (its ``type`` and ``schema_version`` inside)."""
    if not isinstance(data, dict):
        raise ValidationError(f"an event is a dict, got {type(data).__name__}")
    fields = dict(data)
    type_name, version = fields.pop("type", None), fields.pop("schema_version", None)
    if not isinstance(type_name, str) or type(version) is not int:
        raise ValidationError("an event dict names its type and schema_version")
    return event_from_data(type_name, version, fields)


# --------------------------------------------------------------------------- the public API


def to_dict(obj: Record | Event | SLAStatus) -> dict[str, Any]:
    """A record, an event or an SLA status as JSON-ready data (``json.dumps`` takes it)."""
    if isinstance(obj, Event):
        return {**event_data(obj), "type": obj.type, "schema_version": obj.schema_version}
    if isinstance(obj, Record):
        return {
            "kind": obj.kind,
            "id": obj.id,
            "version": obj.version,
            "workflow": obj.workflow.name,
            "history": [to_dict(e) for e in obj.history],
        }
    if isinstance(obj, SLAStatus):
        return {
            "sla": obj.name,
            "evaluated_at": obj.evaluated_at.isoformat(),
            "cycles": [_cycle(c) for c in obj.cycles],
        }
    raise ValidationError(f"to_dict takes a record, an event or an SLA status, not {obj!r}")


def record_from_dict(data: dict[str, Any], cls: type[Record] | None = None) -> Any:
    """The record :func:`to_dict` made, rebuilt from its history (equal to the original).

    ``cls`` is the record class; by default the one registered for the data's ``kind``.
    """
    if not isinstance(data, dict) or not isinstance(data.get("history"), list):
        raise ValidationError("a record dict holds its history as a list of events")
    if cls is None:
        cls = record_class(str(data.get("kind")))
    record = cls.replay([event_from_dict(e) for e in data["history"]])
    if data.get("id", record.id) != record.id:
        raise ValidationError(f"the dict says id {data['id']!r}, its history {record.id!r}")
    return record


def _us(delta: timedelta | None) -> int | None:
    return None if delta is None else delta // timedelta(microseconds=1)


def _td(us: object) -> timedelta | None:
    if us is None:
        return None
    if type(us) is not int:
        raise ValidationError(f"durations are integer microseconds, got {us!r}")
    return timedelta(microseconds=us)


def _when(value: object) -> datetime | None:
    return None if value is None else _datetime(value, datetime)


def _key(key: object) -> object:
    return _unstructure_level(key) if isinstance(key, Level) else key


def _key_back(value: object) -> object:
    if type(value) is int:
        return Priority(value)
    if isinstance(value, str) and ":" in value and value.rpartition(":")[2].isdigit():
        return _structure_level(value, Priority)
    return value


def _cycle(c: CycleStatus) -> dict[str, Any]:
    return {
        "stage": c.stage.value,
        "key": _key(c.key),
        "target": _us(c.target),
        "started_at": None if c.started_at is None else c.started_at.isoformat(),
        "ended_at": None if c.ended_at is None else c.ended_at.isoformat(),
        "elapsed": _us(c.elapsed),
        "business_elapsed": _us(c.business_elapsed),
        "paused": _us(c.paused),
        "business_paused": _us(c.business_paused),
        "remaining": _us(c.remaining),
        "due_at": None if c.due_at is None else c.due_at.isoformat(),
        "breached": c.breached,
        "breached_at": None if c.breached_at is None else c.breached_at.isoformat(),
        "percent": c.percent,
        "warnings": [[f"{f.numerator}/{f.denominator}", t.isoformat()] for f, t in c.warnings],
    }


def status_from_dict(data: dict[str, Any]) -> SLAStatus:
    """The SLA status :func:`to_dict` made."""
    try:
        cycles = tuple(
            CycleStatus(
                SLAStage(c["stage"]),
                _key_back(c["key"]),
                _td(c["target"]),
                _when(c["started_at"]),
                _when(c["ended_at"]),
                _td(c["elapsed"]),  # type: ignore[arg-type]
                _td(c["business_elapsed"]),  # type: ignore[arg-type]
                _td(c["paused"]),  # type: ignore[arg-type]
                _td(c["business_paused"]),  # type: ignore[arg-type]
                _td(c["remaining"]),
                _when(c["due_at"]),
                bool(c["breached"]),
                _when(c["breached_at"]),
                c["percent"],
                tuple((Fraction(f), _when(t)) for f, t in c["warnings"]),  # type: ignore[misc]
            )
            for c in data["cycles"]
        )
        return SLAStatus.of(data["sla"], _datetime(data["evaluated_at"], datetime), cycles)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"not an SLA status dict: {exc!r}") from None
