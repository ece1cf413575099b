"""The record engine: the one base every practice (incident, problem, change …) is built on.

A record is a frozen ``attrs`` class whose every change appends one event to ``history`` and
returns a new record. This module holds everything that is the same for every practice:

- opening a record from its first event, which names the workflow it runs on;
- ``replay`` (rebuild a record from its events), ``timeline`` and the private in-place fold
  the SLA engine walks;
- ``_do`` (check time and lifecycle, then apply one event) and ``fire`` (any trigger of the
  record's workflow, through its typed verb when it has one);
- the registries: appliers per event type, verbs per trigger, workflows per record kind;
- the value checks every verb uses, and the declaration of indexed columns for the stores.

A practice module declares the rest: its state enum, its events, its workflow table with
tags, its fields, its verbs (marked with :func:`verb`) and its appliers (marked with
:func:`applies`). The class is checked when it is created, so a practice that forgot an
applier or a verb fails at import time, not in production.

Naming convention: a practice's ``kind`` (``"incident"``) prefixes the ``type`` of each of its
events (``"incident.resolved"``); that is how the engine knows which events are the
practice's, and which of them subclasses a shared event of :mod:`itsmcore.capabilities`.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from enum import Enum, StrEnum
from itertools import islice
from typing import Any, ClassVar, Final, Self, TypeVar, overload

import attrs

from itsmcore._time import to_us
from itsmcore.errors import DefinitionError, ValidationError
from itsmcore.events import Event, StateChanged, event_types, utc
from itsmcore.workflow import ACTIVE, Workflow

__all__ = [
    "MAX_EVENTS",
    "MAX_LABEL",
    "MAX_TEXT",
    "Column",
    "Opened",
    "Record",
    "applies",
    "label",
    "member",
    "optional_label",
    "optional_text",
    "record_class",
    "state_of",
    "storable",
    "text",
    "verb",
]

F = TypeVar("F", bound=Callable[..., Any])
_E = TypeVar("_E", bound=Enum)

Applier = Callable[[Any, Any], Mapping[str, Any]]
"""``applier(record, event) -> {field: new value}``: how one event changes a record."""


# --------------------------------------------------------------------------- value checks


MAX_LABEL: Final = 255
"""The longest id, name, group, person, service, CI or code (characters): such values are
indexed by the stores, and every store keeps this many."""
MAX_TEXT: Final = 100_000
"""The longest free text (title, notes, a comment) in characters."""
MAX_EVENTS: Final = 10_000
"""The most events one record holds. Loading a record replays its whole history, and a
verb copies it: the cap bounds both (a 10,000-event incident loads from SQLite in about
50 ms). Real tickets have tens of events; a record that reaches the cap is refused further
changes with a ``ValidationError``, and the work goes on in a follow-up record."""


def _too_long(record_id: str) -> str:
    return (
        f"{record_id} holds {MAX_EVENTS:,} events, the most one record may; record further "
        "work on a follow-up record (e.g. a child incident) that links to it"
    )


def storable(value: str, name: str) -> str:
    """``value`` if every store keeps it as it is: no NUL character, no lone surrogate.

    SQLite and the in-memory store would keep either, PostgreSQL refuses both; one rule for
    all three is checked where values enter, so a record never works in one store only.
    """
    if "\x00" in value:
        raise ValidationError(f"{name} contains a NUL character (\\x00), which stores refuse")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                f"{name} is not valid Unicode text (it holds a lone surrogate)"
            ) from None
    return value


def text(value: object, name: str, *, limit: int = MAX_TEXT) -> str:
    """``value`` stripped; ``ValidationError`` naming ``name`` unless it is non-empty text.

    Text longer than ``limit`` characters, or that a store could not keep (see
    :func:`storable`), is refused too.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string, got {value!r}")
    value = value.strip()
    if len(value) > limit:
        raise ValidationError(f"{name} is {len(value):,} characters long; at most {limit:,}")
    return storable(value, name)


def label(value: object, name: str) -> str:
    """Non-empty text of at most :data:`MAX_LABEL` characters: an id, a name, a code."""
    return text(value, name, limit=MAX_LABEL)


def optional_text(value: object, name: str) -> str | None:
    """``None``, or non-empty text stripped."""
    return None if value is None else text(value, name)


def optional_label(value: object, name: str) -> str | None:
    """``None``, or a :func:`label`."""
    return None if value is None else label(value, name)


def member(kind: type[_E], value: object, name: str) -> _E:
    """A member of the enum ``kind`` from itself, its value or a label ("Awaiting Caller")."""
    if isinstance(value, kind):
        return value
    try:
        return kind(value.strip().lower().replace(" ", "_").replace("-", "_"))  # type: ignore[attr-defined]
    except (ValueError, AttributeError):
        allowed = ", ".join(str(m.value) for m in kind)
        raise ValidationError(f"unknown {name} {value!r}; use one of: {allowed}") from None


# --------------------------------------------------------------------------- declarations


def verb(fn: F) -> F:
    """Mark a record method as the typed verb of the workflow trigger of the same name.

    ``fire(trigger, ...)`` runs the verb for such a trigger instead of recording a bare
    ``StateChanged``, so the verb's checks and fields can never be bypassed.
    """
    fn.__itsm_verb__ = fn.__name__  # type: ignore[attr-defined]
    return fn


Writes = Iterable[str] | Callable[[Any], Iterable[str]]
"""What ``@applies(..., sets=...)`` takes: field names, or a function of the record class
returning them (for appliers whose fields the class declares, e.g. its ``editable``)."""


def applies(*events: type[Event], sets: Writes | None = None) -> Callable[[F], F]:
    """Mark a record method as how ``events`` (and their subclasses) change the record.

    The method takes the record as it was and the event, and returns the fields that change.
    An applier on a practice class wins over one a base class declares for a parent event.

    ``sets`` declares every field the method may return (names, or a function of the record
    class giving them). It is optional and checked: a name that is no field of the record is
    a ``DefinitionError`` when the class is created, and so is a verb whose applier returns
    a field it did not declare. The SLA engine reads it to follow the few fields its clocks
    read straight from a history, running only the appliers that set them; an event whose
    applier declares nothing is followed by replaying the whole record.
    """
    if not events or not all(isinstance(e, type) and issubclass(e, Event) for e in events):
        raise DefinitionError(f"@applies takes event classes, got {events!r}")
    if isinstance(sets, str):
        raise DefinitionError(f"sets takes a collection of field names, e.g. ({sets!r},)")
    if sets is not None and not callable(sets):
        sets = tuple(sets)

    def mark(fn: F) -> F:
        fn.__itsm_applies__ = events  # type: ignore[attr-defined]
        fn.__itsm_sets__ = sets  # type: ignore[attr-defined]
        return fn

    return mark


_COLUMN_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
_COLUMN_TYPES: Final = (str, int, datetime)
_RESERVED_COLUMNS: Final = frozenset({"kind", "id", "version"})


def _store_int(value: object) -> int:
    return int(value)  # type: ignore[call-overload, no-any-return]


def _store_datetime(value: object) -> int:
    return to_us(value, "datetime")  # type: ignore[arg-type]


@attrs.frozen
class Column:
    """An indexed column a store keeps for a record kind, for ``find`` to filter and order by.

    ``type`` is ``str``, ``int`` or ``datetime`` (stored as microseconds since the epoch).
    ``find(name=value)`` filters by equality (``str`` and ``int`` columns take one value or
    several); a ``range`` column is filtered by its two filter names instead, the first
    inclusive and the second exclusive (``opened_from`` / ``opened_until``). Every column
    orders. ``None`` values are stored as SQL ``NULL`` and sort last.
    """

    name: str
    type: type  # noqa: A003 - the column's type, named as SQL names it
    range: tuple[str, str] | None = None
    parse: Callable[[Any], Any] | None = None
    """Turns a filter value as users write it into the column's (``"P1"`` into ``1``),
    raising ``ValidationError`` for one that cannot match (an unknown state)."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not _COLUMN_NAME.fullmatch(self.name):
            raise DefinitionError(
                f"column name {self.name!r} must be a lower-case identifier of at most 63 "
                "characters"
            )
        if self.name in _RESERVED_COLUMNS:
            raise DefinitionError(f"column name {self.name!r} is reserved by the stores")
        if self.type not in _COLUMN_TYPES:
            raise DefinitionError(f"column {self.name!r}: type must be str, int or datetime")
        if self.range is not None and (
            len(self.range) != 2 or not all(_COLUMN_NAME.fullmatch(n) for n in self.range)
        ):
            raise DefinitionError(f"column {self.name!r}: range names two filter names")

    @property
    def sql_type(self) -> str:
        """``TEXT`` or ``INTEGER`` (datetimes are stored as microseconds)."""
        return "TEXT" if self.type is str else "INTEGER"

    def stored(self, value: object) -> object:
        """The value as the stores keep it: text, an integer, or ``None``."""
        if value is None:
            return None
        if self.type is str:
            return str(value)
        if self.type is int:
            return _store_int(value)
        return _store_datetime(value)

    def value_of(self, record: object) -> object:
        """The stored value of this column for ``record`` (its attribute of the same name)."""
        return self.stored(getattr(record, self.name))


def state_of(kind: str) -> Callable[[Any], Any]:
    """A ``Column.parse`` for a state column: a state of a workflow registered for ``kind``."""

    def known_state(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the column's own type check says what is wrong
        states = {s for w in _WORKFLOWS.get(kind, {}).values() for s in w.states}
        if value not in states:
            raise ValidationError(
                f"no {kind} workflow has a state {value!r}; states: {', '.join(sorted(states))}"
            )
        return value

    return known_state


# --------------------------------------------------------------------------- events


@attrs.frozen(kw_only=True)
class Opened(Event):
    """Base of every practice's opening event: the record's id and the workflow it runs on.

    The practice's subclass adds the fields the record starts with; fields named like record
    fields are copied onto the record (an ``@applies`` for the opening can add more).
    """

    id: str
    workflow: str
    """The name of the workflow the record runs on, resolved again by ``replay``."""


# --------------------------------------------------------------------------- the record


_ENGINE_FIELDS: Final = frozenset({"id", "state", "opened_at", "opened_by", "history", "workflow"})
_OPENED_FIELDS: Final = frozenset({"at", "by", "state", "id", "workflow"})
_WORKFLOWS: dict[str, dict[str, Workflow]] = {}
_CLASSES: dict[str, type[Record]] = {}


def record_class(kind: str) -> type[Record]:
    """The record class of a kind (``"incident"`` is ``Incident``)."""
    found = _CLASSES.get(kind)
    if found is None:
        known = ", ".join(sorted(_CLASSES)) or "none"
        raise ValidationError(f"no record kind {kind!r} is defined here (known: {known})")
    return found


# Not slotted: a replayed record is updated in place through its __dict__ (see _fold), and
# _apply copies that dict in one C call, several times faster than attrs.evolve re-running
# __init__ over every field for each of a record's many events.
@attrs.frozen(kw_only=True, slots=False)
class Record:
    """Base of every practice's record: its id, state, opening, history and workflow.

    A practice subclasses it (with ``@attrs.frozen(kw_only=True, slots=False)``) and declares
    ``kind``, ``state_enum`` and ``default_workflow``. Build records with the practice's
    ``open(...)`` and change them with its verbs; constructing one directly is checked
    against its history (a record is its history: fields that history does not produce are
    refused).
    """

    # What a practice declares.
    kind: ClassVar[str]
    """Prefix of the practice's event types and name of its workflow registry."""
    state_enum: ClassVar[type[StrEnum] | None] = None
    """The practice's states; a vendor workflow's extra states stay plain strings."""
    default_workflow: ClassVar[Workflow]
    generic_triggers: ClassVar[frozenset[str]] = frozenset()
    """Default-workflow triggers deliberately left to ``fire`` (no typed verb)."""
    indexed: ClassVar[tuple[Column, ...]] = ()
    """The columns stores index for ``find``."""
    number_prefix: ClassVar[str | None] = None
    """The prefix of the record numbers stores hand out (``"INC"`` for ``INC0000001``)."""

    # What the engine builds when the class is created.
    _appliers: ClassVar[dict[type[Event], Applier]]
    _verbs: ClassVar[dict[str, Callable[..., Any]]]
    _events: ClassVar[dict[type[Event], type[Event]]]
    _opening: ClassVar[type[Opened]]
    _fill_opening: ClassVar[Callable[[dict[str, Any], Any, Workflow], None]]
    _opening_applier: ClassVar[Applier | None]
    _state_of: ClassVar[dict[str, str]]
    _writes: ClassVar[dict[Applier, frozenset[str] | None]]
    """Per applier, the fields it declares it may set (``None``: not declared)."""

    id: str
    state: str
    opened_at: datetime
    opened_by: str
    history: tuple[Event, ...]
    workflow: Workflow = attrs.field(eq=False, repr=False)
    """The lifecycle this record's verbs are checked against (not part of its identity)."""

    def __attrs_post_init__(self) -> None:
        # Only direct construction (and attrs.evolve) run __init__: the engine builds records
        # without it. Such a record must be exactly what its history rebuilds.
        history = self.history
        if not isinstance(history, tuple):
            raise ValidationError(f"history must be a tuple of events, got {type(history)}")
        rebuilt = type(self).replay(history, workflow=self.workflow)
        if rebuilt != self:
            names = [
                f.name
                for f in attrs.fields(type(self))
                if f.eq and getattr(rebuilt, f.name) != getattr(self, f.name)
            ]
            raise ValidationError(
                f"{type(self).__name__} {rebuilt.id!r}: {', '.join(names)} differ from what "
                "its history says; build records with open() and their verbs, or replay()"
            )

    # ----------------------------------------------------------------------- class creation

    @classmethod
    def __attrs_init_subclass__(cls) -> None:
        if not hasattr(cls, "kind"):
            return  # a shared base (e.g. a capability of itsmcore.capabilities)
        _build(cls)

    # ----------------------------------------------------------------------- derived fields

    @property
    def version(self) -> int:
        """How many events the record has seen: the optimistic-concurrency token."""
        return len(self.history)

    @property
    def updated_at(self) -> datetime:
        """When the last event happened."""
        return self.history[-1].at

    @property
    def is_active(self) -> bool:
        """Whether work is still to be done: the state is tagged ``active`` in its workflow."""
        return self.state in self.workflow.tagged(ACTIVE)

    # ----------------------------------------------------------------------- workflows

    @classmethod
    def register_workflow(cls, workflow: Workflow, *, replace: bool = False) -> Workflow:
        """Make ``workflow`` resolvable by name when records of this kind are replayed.

        Records name their workflow in their opening event; a store rebuilding one looks the
        name up here. The default workflow is registered already. Registering another
        workflow under a registered name is a ``DefinitionError`` unless ``replace=True``.
        """
        if not isinstance(workflow, Workflow):
            raise DefinitionError(f"register a Workflow, not {type(workflow).__name__}")
        known = _WORKFLOWS.setdefault(cls.kind, {})
        current = known.get(workflow.name)
        if current is not None and current != workflow and not replace:
            raise DefinitionError(
                f"a different {cls.kind} workflow named {workflow.name!r} is registered "
                "already; give yours its own name, or pass replace=True"
            )
        known[workflow.name] = workflow
        return workflow

    @classmethod
    def workflows(cls) -> dict[str, Workflow]:
        """The workflows registered for this kind, by name."""
        return dict(_WORKFLOWS.get(cls.kind, {}))

    @classmethod
    def _workflow_for(cls, name: str, given: Workflow | None) -> Workflow:
        if given is not None:
            if given.name != name:
                raise ValidationError(
                    f"this {cls.kind} was opened on workflow {name!r}, not {given.name!r}; "
                    "replay it on the workflow it was opened with"
                )
            return given
        found = _WORKFLOWS.get(cls.kind, {}).get(name)
        if found is None:
            known = ", ".join(sorted(_WORKFLOWS.get(cls.kind, {}))) or "none"
            raise DefinitionError(
                f"this {cls.kind} runs on workflow {name!r}, which is not registered "
                f"(registered: {known}); call {cls.__name__}.register_workflow(...) with it "
                "when the application starts"
            )
        return found

    # ----------------------------------------------------------------------- opening, replay

    @classmethod
    def _opened(cls, event: Opened, workflow: Workflow) -> Self:
        """The record an opening event starts, on ``workflow``.

        Filled in directly, like _apply: every value comes from a validated event, and
        replaying many histories spends much of its time building these records.
        """
        record = object.__new__(cls)
        cls._fill_opening(record.__dict__, event, workflow)
        applier = cls._opening_applier
        if applier is not None:
            record.__dict__.update(applier(record, event))
        return record

    @staticmethod
    def _workflow(workflow: object) -> Workflow:
        """``workflow`` if it is a ``Workflow`` (``ValidationError`` otherwise), for ``open``.

        A practice's ``open`` builds its opening event with ``state=workflow.initial`` and
        ``workflow=workflow.name``, then returns ``cls._opened(event, workflow)``. (Passing
        the event's fields through a ``**kwargs`` helper here cost a microsecond per open.)
        """
        if not isinstance(workflow, Workflow):
            raise ValidationError(f"workflow must be a Workflow, got {type(workflow).__name__}")
        return workflow

    @classmethod
    def replay(cls, events: Iterable[Event], *, workflow: Workflow | None = None) -> Self:
        """Rebuild a record from its history alone; the result equals the original record.

        The record runs on the workflow its opening event names, looked up among the
        registered ones (:meth:`register_workflow`), or on ``workflow`` if given (it must
        carry that name).

        Raises:
            ValidationError: the history is empty, does not start with this kind's opening,
                goes back in time, or holds an event that is not this kind's.
            DefinitionError: the history names a workflow nobody registered.
        """
        events = tuple(events)
        first = events[0] if events else None
        if not isinstance(first, cls._opening):
            raise ValidationError(
                f"a {cls.kind} history starts with an opening ({cls._opening.type}), not {first!r}"
            )
        record = cls._opened(first, cls._workflow_for(first.workflow, workflow))
        record._fold(events)  # noqa: SLF001 - the record is still private to replay
        record.__dict__["history"] = events
        return record

    def timeline(self) -> list[tuple[Event, Self]]:
        """The record as it was after each event of its history, oldest first."""
        steps: list[tuple[Event, Self]] = []

        def keep(event: Event, record: Self) -> None:
            snapshot = copy.copy(record)
            snapshot.__dict__["history"] = tuple(record.history)  # its own, not the scratch view
            steps.append((event, snapshot))

        self._walk(keep)
        return steps

    def _walk(self, on_step: Callable[[Event, Self], object], *, history: bool = True) -> None:
        """Call ``on_step(event, record)`` with the record as it was after each event.

        The record passed is one scratch object updated in place between calls: read it
        during the call, copy it to keep it. ``history=False`` skips keeping the scratch
        record's ``history`` (and so ``version``) current, for callers that never read them.
        """
        record, events = self._steps(history=history)
        for event in events:
            on_step(event, record)

    def _steps(self, *, history: bool = True) -> tuple[Self, Iterator[Event]]:
        """A scratch record and the events of this history, each applied to it when yielded.

        After each event is yielded the scratch record is as this record was after that event
        (the opening included): read it then, copy it to keep it. This is how SLA clocks are
        evaluated without building a record per event; stopping early costs nothing more.
        """
        first = self.history[0]
        record = self._opened(first, self.workflow)  # type: ignore[arg-type]
        return record, record._advance(self.history, history=history)  # noqa: SLF001

    @classmethod
    def _opening_of(cls, names: Iterable[str]) -> Callable[[dict[str, Any], Any, Workflow], None]:
        """``_fill_opening`` for a projection: of the record's own fields, only ``names``.

        Besides them it fills the id, state, workflow and opening, but no history. The
        opening's applier, if any, is the caller's to run: see the SLA engine's projections,
        which follow a few fields of a record without replaying all of it.
        """
        wanted = frozenset(names)
        defaults, copied = _field_plan(cls, cls._opening, cls._opening_applier)
        return _filler(
            {k: v for k, v in defaults.items() if k in wanted},
            tuple(c for c in copied if c in wanted),
            cls._state_of,
            history=False,
        )

    def _fold(self, events: Iterable[Event]) -> None:
        """Apply every event after the opening to this (not yet shared) record, in place.

        Building one record per event would cost a copy each time; the caller sets
        ``history`` once at the end.
        """
        deque(self._advance(events, history=False), maxlen=0)  # consumed at C speed

    def _advance(self, events: Iterable[Event], *, history: bool) -> Iterator[Event]:
        """The one fold: apply each event after the opening in place, yielding each once applied.

        The opening (already applied: it made this record) is yielded first.

        With ``history`` the scratch record's ``history`` grows with the events applied, as a
        view of them (copying the tuple at every event made a walk quadratic in its length).
        """
        fields = self.__dict__
        if history:
            events = tuple(events)  # the scratch history is a growing view of this tuple
        stream = iter(events)
        first = next(stream)
        yield first
        last = first.at
        seen = len(fields["history"]) if history else 0
        appliers = self._appliers
        known_state = self._state_of.get
        unchanged = _unchanged
        for event in stream:
            apply = appliers.get(type(event))
            if apply is None:
                apply = self._applier(event)
            if event.at < last:
                raise ValidationError(
                    f"{self.id}: the history goes back in time at {event.type} "
                    f"({event.at.isoformat()} after {last.isoformat()})"
                )
            last = event.at
            if apply is not unchanged:  # a projection's skipped applier (SLA clocks)
                fields.update(apply(self, event))
            fields["state"] = known_state(event.state, event.state)
            if history:
                seen += 1
                fields["history"] = _Prefix(events, seen)  # type: ignore[arg-type]
            yield event

    @classmethod
    def _applier(cls, event: Event) -> Applier:
        """The applier of an event type first seen here (e.g. a vendor's), or a clear error."""
        kind = type(event)
        found = _inherited(cls._appliers, kind)
        # Another practice's subclass of a shared event must not pass for one of ours.
        if found is None or not (kind.type.startswith(f"{cls.kind}.") or kind is StateChanged):
            raise ValidationError(f"{type(event).__name__} is not a {cls.kind} event")
        cls._appliers[type(event)] = found
        return found

    # ----------------------------------------------------------------------- changing

    def _do(
        self, trigger: str, event_class: type[Event], at: datetime, by: str, /, **data: Any
    ) -> Self:
        """Check time and lifecycle, then apply one event; nothing changes on error.

        Positional-only, so event fields named ``kind`` or ``trigger`` pass through ``data``.
        """
        # The checks of _check, inline: this is every verb's path (a call is ~5% of a verb).
        at = utc(at)
        history = self.history
        if len(history) >= MAX_EVENTS:
            raise ValidationError(_too_long(self.id))
        last = history[-1].at
        if at < last:
            raise ValidationError(
                f"{self.id}: {trigger} at {at.isoformat()} is before the last event "
                f"({last.isoformat()}); a record's time never goes backwards"
            )
        state = self.workflow.target(self, trigger, **data)
        return self._apply(event_class(at=at, by=by, state=state, **data))

    def _check(self, trigger: str, at: datetime, /, **data: Any) -> tuple[datetime, str]:
        """``at`` in UTC and the state ``trigger`` leads to, if it may fire at ``at``."""
        if len(self.history) >= MAX_EVENTS:
            raise ValidationError(_too_long(self.id))
        at = utc(at)
        last = self.history[-1].at
        if at < last:
            raise ValidationError(
                f"{self.id}: {trigger} at {at.isoformat()} is before the last event "
                f"({last.isoformat()}); a record's time never goes backwards"
            )
        return at, self.workflow.target(self, trigger, **data)

    def _apply(self, event: Event) -> Self:
        apply = self._appliers.get(type(event))
        if apply is None:
            apply = self._applier(event)
        new = object.__new__(type(self))
        fields = new.__dict__
        fields.update(self.__dict__)
        changes = apply(self, event)  # values already checked by the verb or the event
        writes = self._writes.get(apply)
        if writes is not None and not changes.keys() <= writes:
            raise DefinitionError(
                f"{type(self).__name__}: the applier of {type(event).__name__} set "
                f"{', '.join(sorted(changes.keys() - writes))}, which its @applies(sets=...) "
                "does not declare"
            )
        fields.update(changes)
        # Concatenation copies the tuple in one step; ``(*history, event)`` builds a list
        # first and took twice as long (15 against 7 us at 3,000 events).
        fields["history"] = self.history + (event,)  # noqa: RUF005 - see above
        fields["state"] = self._state_of.get(event.state, event.state)
        return new

    def _event(self, shared: type[Event]) -> type[Event]:
        """This practice's subclass of a shared event (``IncidentAssigned`` of ``Assigned``)."""
        return self._events[shared]

    def fire(self, trigger: str, *, at: datetime, by: str, **data: Any) -> Self:
        """Fire any trigger of this record's workflow, e.g. one a customised lifecycle adds.

        A trigger with a typed verb (``hold``, ``resolve``, ``close`` …) runs that verb with
        ``data`` as its arguments, so its checks and fields always apply; arguments the verb
        does not take are a ``ValidationError``. Any other trigger moves the record to the
        trigger's target and records a ``StateChanged`` event with ``data`` as text.
        """
        method = self._verbs.get(trigger)
        if method is not None:
            signature = inspect.signature(method)
            try:
                signature.bind(self, at=at, by=by, **data)
            except TypeError as exc:
                params = [
                    f"{p.name}="
                    for p in signature.parameters.values()
                    if p.kind is p.KEYWORD_ONLY and p.name not in ("at", "by")
                ]
                raise ValidationError(
                    f"fire({trigger!r}) runs the {trigger} verb, which takes "
                    f"{', '.join(params) or 'no arguments'} besides at= and by= ({exc})"
                ) from None
            return method(self, at=at, by=by, **data)  # type: ignore[no-any-return]
        return self._do(
            trigger,
            StateChanged,
            at,
            by,
            trigger=trigger,
            source=str(self.state),
            data=tuple(
                sorted(
                    (storable(str(k), "data"), storable(str(v), str(k))) for k, v in data.items()
                )
            ),
        )

    @classmethod
    def _declare(cls) -> None:
        """Check a practice's own declarations when its class is created (extend with super)."""

    @applies(StateChanged, sets=())
    def _on_state_changed(self, _event: StateChanged) -> Mapping[str, Any]:
        return _NOTHING


_NOTHING: Final[Mapping[str, Any]] = {}


def _unchanged(_record: Any, _event: Event) -> Mapping[str, Any]:
    """An applier that changes nothing, which the fold skips without calling it.

    A record whose applier table maps an event to it (the SLA engine's projections, which
    follow only some fields) goes through that event changing only its state.
    """
    return _NOTHING


# --------------------------------------------------------------------------- class checks


def _build(cls: type[Record]) -> None:
    """Collect a practice's appliers, verbs and events, and check they fit together."""
    kind = cls.kind
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", kind):
        raise DefinitionError(f"{cls.__name__}.kind must be a lower-case identifier: {kind!r}")
    workflow = getattr(cls, "default_workflow", None)
    if not isinstance(workflow, Workflow):
        raise DefinitionError(f"{cls.__name__} declares no default_workflow")
    appliers, verbs = _marked(cls)
    own = [e for t, e in event_types().items() if t.startswith(f"{kind}.")]
    opening = _opening_of(cls, own)
    opening_applier = appliers.pop(opening, None)
    cls._appliers = _own_appliers(cls, appliers, own, opening)
    cls._verbs = verbs
    cls._events = _concrete_events(cls, appliers, own)
    cls._opening = opening
    cls._state_of = {} if cls.state_enum is None else {m.value: m for m in cls.state_enum}
    defaults, copied = _field_plan(cls, opening, opening_applier)
    cls._fill_opening = staticmethod(_filler(defaults, copied, cls._state_of))
    cls._opening_applier = opening_applier
    cls._writes = _writes(cls, [*appliers.values(), *filter(None, [opening_applier])])
    _check_verbs(cls, workflow)
    cls._declare()
    _CLASSES.setdefault(kind, cls)  # the practice's own class; a vendor's subclass is named
    _WORKFLOWS.setdefault(kind, {})[workflow.name] = workflow


def _marked(cls: type[Record]) -> tuple[dict[type[Event], Applier], dict[str, Callable[..., Any]]]:
    """The ``@applies`` and ``@verb`` methods along the class's MRO, the most derived winning."""
    appliers: dict[type[Event], Applier] = {}
    verbs: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).values():
            fn = getattr(attr, "__func__", attr)
            appliers.update(dict.fromkeys(getattr(fn, "__itsm_applies__", ()), fn))
            trigger = getattr(fn, "__itsm_verb__", None)
            if trigger is not None:
                verbs[trigger] = fn
    return appliers, verbs


def _writes(cls: type[Record], appliers: list[Applier]) -> dict[Applier, frozenset[str] | None]:
    """Each applier's declared fields (``@applies(sets=...)``), resolved for ``cls``."""
    names = {f.name for f in attrs.fields(cls)}
    out: dict[Applier, frozenset[str] | None] = {}
    for fn in appliers:
        sets = getattr(fn, "__itsm_sets__", None)
        if sets is None:
            out[fn] = None
            continue
        declared = frozenset(sets(cls) if callable(sets) else sets)
        unknown = sorted(n for n in declared if n not in names or n in _ENGINE_FIELDS)
        if unknown:
            raise DefinitionError(
                f"{cls.__name__}.{getattr(fn, '__name__', fn)}: sets names "
                f"{', '.join(unknown)}, which are not fields an applier may set"
            )
        out[fn] = declared
    return out


def _opening_of(cls: type[Record], own: list[type[Event]]) -> type[Opened]:
    openings = [e for e in own if issubclass(e, Opened)]
    if len(openings) != 1:
        found = ", ".join(e.__name__ for e in openings) or "none"
        raise DefinitionError(
            f"{cls.__name__}: a practice has exactly one opening event (a subclass of Opened "
            f"with a '{cls.kind}.' type); found {found}"
        )
    return openings[0]


def _own_appliers(
    cls: type[Record],
    appliers: dict[type[Event], Applier],
    own: list[type[Event]],
    opening: type[Opened],
) -> dict[type[Event], Applier]:
    """Every event of the practice has an applier, resolved once here, not per event."""
    out = dict(appliers)
    for event in own:
        if event is opening:
            continue
        found = _inherited(appliers, event)
        if found is None:
            raise DefinitionError(
                f"{cls.__name__}: no applier for {event.__name__} ({event.type!r}); mark a "
                f"method @applies({event.__name__})"
            )
        out[event] = found
    return out


def _concrete_events(
    cls: type[Record], appliers: Mapping[type[Event], Applier], own: list[type[Event]]
) -> dict[type[Event], type[Event]]:
    """The practice's one subclass of each shared event its capabilities record."""
    events: dict[type[Event], type[Event]] = {event: event for event in own}
    for shared in appliers:
        if shared is StateChanged or shared in events:
            continue
        concrete = [e for e in own if issubclass(e, shared)]
        if len(concrete) != 1:
            found = ", ".join(e.__name__ for e in concrete) or "none"
            raise DefinitionError(
                f"{cls.__name__}: its capabilities record {shared.__name__}, so it declares "
                f"exactly one subclass of it with a '{cls.kind}.' type; found {found}"
            )
        events[shared] = concrete[0]
    return events


def _field_plan(
    cls: type[Record], opening: type[Opened], opening_applier: Applier | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The record's defaults, and the fields its opening event fills by name."""
    fields = [f for f in attrs.fields(cls) if f.name not in _ENGINE_FIELDS]
    if any(isinstance(f.default, attrs.Factory) for f in fields):  # type: ignore[arg-type]
        raise DefinitionError(f"{cls.__name__}: record fields take immutable defaults")
    defaults = {f.name: f.default for f in fields if f.default is not attrs.NOTHING}
    names = {f.name for f in fields}
    opening_fields = tuple(
        f.name for f in attrs.fields(opening) if f.name not in _OPENED_FIELDS and f.name in names
    )
    missing = [f.name for f in fields if f.name not in defaults and f.name not in opening_fields]
    if missing and opening_applier is None:
        raise DefinitionError(
            f"{cls.__name__}: {', '.join(missing)} have no default and {opening.__name__} has "
            "no field of that name; add one, or an @applies for the opening"
        )
    return defaults, opening_fields


def _filler(
    defaults: dict[str, Any],
    copied: tuple[str, ...],
    state_of: dict[str, str],
    *,
    history: bool = True,
) -> Callable[[dict[str, Any], Any, Workflow], None]:
    """A function filling a new record's field dict from its opening event, in one call.

    Generated once per practice, as attrs generates ``__init__``: with one ``dict.update``
    taking every field as a keyword, building an incident from its opening takes 0.95 µs;
    updating from ``zip(names, attrgetter(*names)(event))`` instead took 1.2 µs (the zip
    alone 0.8 µs), as much as a third of replaying a seven-event history. Field names are
    attrs field names (identifiers), so the source is safe to compile. Without ``history``
    the record's history is left out (a projection, see :meth:`Record._opening_of`).
    """
    pairs = "".join(f", {name}=e.{name}" for name in copied)
    source = (
        "def fill(fields, e, workflow):\n"
        "    state = e.state\n"
        "    fields.update(defaults, id=e.id, opened_at=e.at, opened_by=e.by,"
        f" state=state_of.get(state, state),{' history=(e,),' if history else ''}"
        f" workflow=workflow{pairs})\n"
    )
    namespace: dict[str, Any] = {"defaults": defaults, "state_of": state_of}
    exec(compile(source, "<itsmcore opening>", "exec"), namespace)  # noqa: S102 - see above
    fill: Callable[[dict[str, Any], Any, Workflow], None] = namespace["fill"]
    return fill


def _inherited(appliers: Mapping[type[Event], Applier], event: type[Event]) -> Applier | None:
    """The applier for ``event``: its own, or the nearest base class's."""
    for base in event.__mro__:
        found = appliers.get(base)
        if found is not None:
            return found
    return None


def _check_verbs(cls: type[Record], workflow: Workflow) -> None:
    """Every trigger of a practice's default workflow has a verb or is declared generic."""
    triggers = {row.trigger for row in workflow.transitions}
    untyped = sorted(triggers - set(cls._verbs) - cls.generic_triggers)
    if untyped:
        raise DefinitionError(
            f"{cls.__name__}: the triggers {', '.join(untyped)} of its default workflow have no "
            "verb; write one (marked @verb) or list them in generic_triggers"
        )
    stray = sorted(set(cls._verbs) - triggers)
    if stray:
        raise DefinitionError(
            f"{cls.__name__}: the verbs {', '.join(stray)} have no trigger in its default "
            f"workflow {workflow.name!r}; add rows for them"
        )


class _Prefix(Sequence[Event]):
    """The first ``n`` events of a history tuple, without copying them.

    A scratch record's ``history`` while it is walked: copying the tuple at every event
    made walking a history quadratic in its length. Reads like the tuple it stands for.
    """

    __slots__ = ("_events", "_n")

    def __init__(self, events: tuple[Event, ...], n: int) -> None:
        self._events, self._n = events, n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Event, ...]: ...
    def __getitem__(self, index: int | slice) -> Event | tuple[Event, ...]:
        if isinstance(index, slice):
            return self._events[: self._n][index]
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError("history index out of range")
        return self._events[index]

    def __iter__(self) -> Iterator[Event]:
        return islice(self._events, self._n)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, _Prefix)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))
