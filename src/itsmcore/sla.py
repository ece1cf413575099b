"""SLA clocks: pure functions of a record's history, evaluated at any instant.

An ``SLADefinition`` says when a clock attaches to a record (``start``), when it stops
counting for a while (``pause``), when it is met (``stop``), when it no longer applies
(``cancel``) and when it starts over (``reset``), each a predicate over the record as it was
after each event of its history. ``evaluate(record, at=...)`` replays that history and
returns an ``SLAStatus``: nothing is stored, so nothing goes stale, and asking with an
earlier ``at`` answers what the clock said then.

Time is counted in integer microseconds on the definition's business calendar, so no float
can flip a breach: a clock is breached once its business elapsed time *exceeds* the target;
at the due instant itself it is at 100 % and not yet breached.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from fractions import Fraction
from itertools import takewhile
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, Protocol, TypeVar, overload

import attrs

from itsmcore._time import EPOCH, MICROSECOND, from_us, require_aware, to_us
from itsmcore.calendar import MAX_SPAN, BusinessCalendar, Ruler
from itsmcore.errors import DefinitionError, ValidationError
from itsmcore.priority import Priority
from itsmcore.record import _unchanged
from itsmcore.workflow import CANCELED, MET, PAUSED

if TYPE_CHECKING:
    from itsmcore.events import Event

__all__ = [
    "Condition",
    "CycleStatus",
    "Moment",
    "Reclassification",
    "Reopen",
    "SLADefinition",
    "SLAKind",
    "SLAStage",
    "SLAStatus",
    "evaluate_many",
]

Condition = Callable[[Any], bool]
"""A predicate over a snapshot of the record (after one event of its history)."""


class Walkable(Protocol):
    """A record whose history the engine can replay (any record of :mod:`itsmcore.record`)."""

    @property
    def history(self) -> Sequence[Event]: ...

    def _steps(self, *, history: bool = True) -> tuple[Any, Iterator[Event]]: ...


class SLAKind(StrEnum):
    """Who owes the target: the customer (SLA), another internal group (OLA), a vendor (UC)."""

    SLA = "sla"
    OLA = "ola"
    UC = "uc"


class SLAStage(StrEnum):
    """Where a clock is. Breach is a separate flag: a completed clock can be breached."""

    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELED = "canceled"


class Reclassification(StrEnum):
    """What happens when the target's input (usually the priority) changes mid-flight.

    No policy loses paused time: it stays with the cycle it was spent in.
    """

    RECOMPUTE = "recompute"
    """Same cycle, same start, elapsed time kept; the target becomes the new class's (iTop)."""
    RESTART = "restart"
    """The running cycle is canceled and a new one starts at the change (ServiceNow)."""
    KEEP = "keep"
    """The target stays the one the cycle started with."""


class Reopen(StrEnum):
    """What a completed clock does when its stop condition stops holding (a reopen)."""

    RESUME = "resume"
    """The same cycle counts on; the time it was completed is not counted."""
    NEW_CYCLE = "new_cycle"
    """A fresh cycle starts at the reopen; the completed one keeps its figures."""
    NONE = "none"
    """Completed is final (e.g. a response target, met once)."""


def _never(_record: Any) -> bool:
    return False


def _always(_record: Any) -> bool:
    return True


# Snapshot fields that only a history kept current during replay can answer.
_HISTORY_FIELDS: Final = frozenset({"history", "version", "updated_at"})
_DEFAULT_WARNINGS: Final = (Fraction(1, 2), Fraction(3, 4), Fraction(1))
_UTC_ALWAYS: Final = BusinessCalendar.always(tz="UTC")


def _targets(value: Mapping[Any, timedelta | None]) -> dict[Hashable, timedelta | None]:
    if not isinstance(value, Mapping) or not value:
        raise DefinitionError(
            f"targets must map classes (e.g. priorities) to timedeltas: {value!r}"
        )
    for key, target in value.items():
        # None is best effort: the clock counts but cannot breach.
        if target is not None and not (isinstance(target, timedelta) and target >= timedelta(0)):
            raise DefinitionError(f"target for {key!r} must be a non-negative timedelta or None")
    return dict(value)


def _fractions(value: Iterable[Fraction | float | str]) -> tuple[Fraction, ...]:
    try:
        out = tuple(sorted({Fraction(v) for v in value}))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
        raise DefinitionError(f"warnings must be fractions of the target: {exc}") from exc
    if any(f <= 0 for f in out):
        raise DefinitionError("warnings must be positive fractions of the target (0.5 = 50 %)")
    return out


def _field_names(value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):  # one name, not its letters
        raise DefinitionError(f"reads takes a collection of field names, e.g. ({value!r},)")
    try:
        return tuple(value)
    except TypeError:
        raise DefinitionError(f"reads takes field names, got {value!r}") from None


_P = TypeVar("_P", bound=StrEnum)


def _policy(kind: type[_P], value: object) -> _P:
    """A member of ``kind`` from itself or its documented value (``"resume"``)."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        with suppress(ValueError):
            return kind(value.strip().lower())
    allowed = ", ".join(repr(m.value) for m in kind)
    raise DefinitionError(f"unknown {kind.__name__} {value!r}; use one of: {allowed}")


def _sla_kind(value: object) -> SLAKind:
    return _policy(SLAKind, value)


def _reclassification(value: object) -> Reclassification:
    return _policy(Reclassification, value)


def _reopen(value: object) -> Reopen:
    return _policy(Reopen, value)


_CACHES: Final = ("_memo", "_walks")
"""The fields of a definition that only remember work done (left out when pickled)."""


@attrs.frozen(kw_only=True)
class SLADefinition:
    """When an SLA clock runs and what it must achieve.

    ``targets`` maps each class of record (by default its ``priority``, or what ``classify``
    returns) to a ``timedelta`` of business time, or ``None`` for best effort. When
    ``classes`` (the classifier's possible values) is known, every class must have an entry:
    the priority classifier's classes are P1 to P5.
    """

    name: str
    targets: dict[Hashable, timedelta | None] = attrs.field(converter=_targets, hash=False)
    """Business-time target per class (``None``: best effort, no target)."""
    calendar: BusinessCalendar = _UTC_ALWAYS
    start: Condition = _always
    stop: Condition
    pause: Condition = _never
    cancel: Condition = _never
    reset: Condition = _never
    classify: Callable[[Any], Hashable] = attrgetter("priority")
    classes: frozenset[Hashable] | None = frozenset(Priority)
    kind: SLAKind = attrs.field(default=SLAKind.SLA, converter=_sla_kind)
    reclassification: Reclassification = attrs.field(
        default=Reclassification.RECOMPUTE, converter=_reclassification
    )
    reopen: Reopen = attrs.field(default=Reopen.RESUME, converter=_reopen)
    warnings: tuple[Fraction, ...] = attrs.field(default=_DEFAULT_WARNINGS, converter=_fractions)
    reads: tuple[str, ...] | None = attrs.field(default=None, converter=_field_names)
    """The record fields the conditions and ``classify`` read, if they read nothing else.

    Declaring them lets evaluation skip events that change none of them and remember the
    conditions' answers per combination of values; the presets declare theirs. The record's
    ``workflow`` may be read without being declared (it never changes during a history, and
    answers are remembered per workflow). Leave it ``None`` for conditions that read
    anything else (history, time, other records).
    """
    _memo: dict[tuple[type, int], tuple[Any, _Runs, Callable[[Any], Any] | None]] = attrs.field(
        factory=dict, init=False, eq=False, repr=False, hash=False
    )
    """Per record type and workflow (by id, kept alive here): condition answers per
    combination of the values ``reads`` names and the runs of the clock machine (see
    ``_Node``), and the getter of those values."""
    _walks: dict[type, _Projections | None] = attrs.field(
        factory=dict, init=False, eq=False, repr=False, hash=False
    )
    """Per record type, how this definition's clocks walk its histories (see _run)."""
    _target_us: dict[Hashable, int | None] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )
    _marks: dict[int, tuple[tuple[int, Fraction], ...]] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )
    _reads_history: bool = attrs.field(init=False, eq=False, repr=False, hash=False)
    _final: frozenset[SLAStage] = attrs.field(init=False, eq=False, repr=False, hash=False)
    """The stages after which no later event can change this clock (see ``_Machine``)."""
    _instant: tuple[Any, int, datetime, tzinfo] = attrs.field(
        default=(None, 0, EPOCH, UTC), init=False, eq=False, repr=False, hash=False
    )
    """The last ``at`` asked, its microseconds and itself as a result shows it: a batch of
    evaluations at one instant converts it once."""

    def _at(self, at: datetime) -> tuple[int, datetime, tzinfo]:
        """``at`` in microseconds since the epoch, as results show it, and its zone."""
        last = self._instant
        if last[0] is at:
            return last[1], last[2], last[3]
        now = to_us(require_aware(at, "at"), "at")
        tz = at.tzinfo or UTC
        shown = from_us(now, tz)
        object.__setattr__(self, "_instant", (at, now, shown, tz))
        return now, shown, tz

    def flags(self, record: Any) -> _Flags:
        """Every condition's answer, and the class, for one snapshot of a record."""
        stop = bool(self.stop(record))
        cancel = bool(self.cancel(record))
        reset = bool(self.reset(record))
        return _Flags(
            bool(self.start(record)),
            stop,
            bool(self.pause(record)),
            cancel,
            reset,
            self.classify(record),
            not (stop or cancel or reset),
        )

    def __getstate__(self) -> dict[str, Any]:
        """The definition without its caches, for pickling.

        It travels (to Dask, Spark, a process pool) as it was declared, not with the runs and
        answers remembered from earlier records: those made Dask's deterministic hashing of a
        task refuse it, and would ship a cache that only grows to every worker.
        """
        return {
            a.name: getattr(self, a.name) for a in attrs.fields(type(self)) if a.name not in _CACHES
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        for name in _CACHES:
            object.__setattr__(self, name, {})

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DefinitionError("an SLA definition needs a name")
        for field in ("start", "stop", "pause", "cancel", "reset", "classify"):
            if not callable(getattr(self, field)):
                raise DefinitionError(f"{self.name}: {field} must be callable")
        if self.reads is not None and (
            not self.reads or not all(isinstance(f, str) and f for f in self.reads)
        ):
            raise DefinitionError(f"{self.name}: reads must name record fields, got {self.reads!r}")
        if not isinstance(self.calendar, BusinessCalendar):
            raise DefinitionError(f"{self.name}: calendar must be a BusinessCalendar")
        # A target the calendar needs more than a century to deliver is a mistake, not a goal.
        weekly = sum(end - start for day in self.calendar.week for start, end in day)
        longest = MICROSECOND * ((MAX_SPAN // MICROSECOND) * weekly // (7 * 86_400))
        too_long = [k for k, t in self.targets.items() if t is not None and t > longest]
        if too_long:
            raise DefinitionError(
                f"{self.name}: the target for {too_long[0]!r} needs more than {MAX_SPAN.days:,} "
                f"days of this calendar (at most {longest} of business time)"
            )
        # Keeping a replayed snapshot's history current costs a tuple per event: only if read.
        object.__setattr__(
            self,
            "_reads_history",
            self.reads is None or not _HISTORY_FIELDS.isdisjoint(self.reads),
        )
        object.__setattr__(self, "_final", _final_stages(self))
        object.__setattr__(
            self,
            "_target_us",
            {k: None if v is None else v // MICROSECOND for k, v in self.targets.items()},
        )
        # Every target a cycle can have comes from this table: its warning thresholds, once.
        object.__setattr__(
            self,
            "_marks",
            {
                t: tuple((_threshold(t, f), f) for f in self.warnings)
                for t in self._target_us.values()
                if t is not None
            },
        )
        if self.classes is not None:
            missing = [c for c in self.classes if c not in self.targets]
            if missing:
                names = ", ".join(sorted(getattr(c, "name", str(c)) for c in missing))
                raise DefinitionError(
                    f"{self.name}: no target for {names}; give each a timedelta, or None for "
                    "best effort"
                )

    # ----------------------------------------------------------------------- presets

    @classmethod
    def response(
        cls,
        targets: Mapping[Any, timedelta | None],
        calendar: BusinessCalendar = _UTC_ALWAYS,
        *,
        name: str = "response",
        classify: Callable[[Any], Hashable] | None = None,
        classes: Iterable[Hashable] | None = None,
        reclassification: Reclassification | str = Reclassification.RECOMPUTE,
        warnings: Iterable[Fraction | float | str] = _DEFAULT_WARNINGS,
    ) -> SLADefinition:
        """Time to respond, for any record kind: from opening until someone responds.

        Met when the record is first assigned (if it has an assignment group) or leaves its
        workflow's initial state for a state not tagged ``canceled``; canceled in a state
        tagged ``canceled`` first. Final once met. The class is the record's priority unless
        ``classify`` says otherwise (then ``classes`` lists its values, if known).
        """
        return cls._preset(
            name=name,
            targets=targets,
            calendar=calendar,
            stop=_responded,
            reopen=Reopen.NONE,
            classify=classify,
            classes=classes,
            reclassification=reclassification,
            warnings=warnings,
            reads=("state", "assignment_group"),
        )

    @classmethod
    def resolution(
        cls,
        targets: Mapping[Any, timedelta | None],
        calendar: BusinessCalendar = _UTC_ALWAYS,
        *,
        name: str = "resolution",
        classify: Callable[[Any], Hashable] | None = None,
        classes: Iterable[Hashable] | None = None,
        reopen: Reopen | str = Reopen.RESUME,
        reclassification: Reclassification | str = Reclassification.RECOMPUTE,
        warnings: Iterable[Fraction | float | str] = _DEFAULT_WARNINGS,
    ) -> SLADefinition:
        """Time to deliver, for any record kind: from opening until a state tagged ``met``.

        Paused in states tagged ``paused``, met in states tagged ``met``, canceled in states
        tagged ``canceled`` (tags of the record's own workflow, so a vendor's states count as
        they are tagged). A clock met and then reopened counts on by default
        (``reopen=Reopen.NEW_CYCLE`` starts afresh).
        """
        return cls._preset(
            name=name,
            targets=targets,
            calendar=calendar,
            stop=_met,
            pause=_paused,
            reopen=reopen,
            classify=classify,
            classes=classes,
            reclassification=reclassification,
            warnings=warnings,
            reads=("state",),
        )

    @classmethod
    def _preset(
        cls,
        *,
        classify: Callable[[Any], Hashable] | None,
        classes: Iterable[Hashable] | None,
        reads: tuple[str, ...],
        **definition: Any,
    ) -> SLADefinition:
        if classify is None:  # the priority: its classes are known, and it is a plain field
            return cls(cancel=_canceled, reads=(*reads, "priority"), **definition)
        try:
            known = None if classes is None else frozenset(classes)
        except TypeError:
            raise DefinitionError(f"classes must be a collection, got {classes!r}") from None
        return cls(cancel=_canceled, classify=classify, classes=known, **definition)

    @classmethod
    def incident_response(
        cls,
        targets: Mapping[Any, timedelta | None],
        calendar: BusinessCalendar = _UTC_ALWAYS,
        *,
        name: str = "incident response",
        reclassification: Reclassification | str = Reclassification.RECOMPUTE,
        warnings: Iterable[Fraction | float | str] = _DEFAULT_WARNINGS,
    ) -> SLADefinition:
        """Time to respond to an incident: :meth:`response` under the incident's name.

        Runs from opening until the incident is first assigned or leaves New (started, put
        on hold, resolved); canceled if the incident is canceled first. Final once met.
        """
        return cls.response(
            targets, calendar, name=name, reclassification=reclassification, warnings=warnings
        )

    @classmethod
    def incident_resolution(
        cls,
        targets: Mapping[Any, timedelta | None],
        calendar: BusinessCalendar = _UTC_ALWAYS,
        *,
        name: str = "incident resolution",
        pause_on: Iterable[str] | None = None,
        reopen: Reopen | str = Reopen.RESUME,
        reclassification: Reclassification | str = Reclassification.RECOMPUTE,
        warnings: Iterable[Fraction | float | str] = _DEFAULT_WARNINGS,
    ) -> SLADefinition:
        """Time to resolve an incident: :meth:`resolution`, optionally paused by hold reason.

        Runs from opening, paused while on hold, met when resolved. ``pause_on`` limits
        pausing to chosen hold reasons (e.g. awaiting the caller, not awaiting a vendor,
        whose delay is still ours towards the customer). A reopened incident's clock counts
        on by default (``reopen=Reopen.NEW_CYCLE`` starts afresh). Canceled if the incident
        is canceled.
        """
        definition = cls.resolution(
            targets,
            calendar,
            name=name,
            reopen=reopen,
            reclassification=reclassification,
            warnings=warnings,
        )
        if pause_on is None:
            return definition
        try:
            if isinstance(pause_on, str):
                raise TypeError  # noqa: TRY301 - one message for both mistakes
            reasons = frozenset(str(r) for r in pause_on)
        except TypeError:
            raise DefinitionError(
                f"{name}: pause_on takes a collection of hold reasons, got {pause_on!r}"
            ) from None
        return attrs.evolve(
            definition,
            pause=_PausedFor(reasons),
            reads=(*(definition.reads or ()), "hold_reason"),
        )

    @classmethod
    def incident_ola(
        cls,
        group: str,
        targets: Mapping[Any, timedelta | None],
        calendar: BusinessCalendar = _UTC_ALWAYS,
        *,
        name: str | None = None,
        pause_on_hold: bool = True,
        reclassification: Reclassification | str = Reclassification.RECOMPUTE,
        warnings: Iterable[Fraction | float | str] = _DEFAULT_WARNINGS,
    ) -> SLADefinition:
        """An operational level agreement for one assignment group.

        The group's clock attaches when the record is first assigned to it and runs only
        while it is assigned to the group (and, by default, not in a state tagged
        ``paused``); met in a state tagged ``met``.
        """
        if not isinstance(group, str) or not group:
            raise DefinitionError("an OLA needs the assignment group it binds")
        return cls(
            name=name or f"OLA {group}",
            kind=SLAKind.OLA,
            targets=targets,
            calendar=calendar,
            start=_AssignedTo(group),
            stop=_met,
            pause=_AwayFrom(group, on_hold=pause_on_hold),
            cancel=_canceled,
            reclassification=reclassification,
            reopen=Reopen.RESUME,
            warnings=warnings,
            reads=("state", "assignment_group", "priority"),
        )

    # ----------------------------------------------------------------------- evaluation

    def evaluate(self, record: Walkable, *, at: datetime) -> SLAStatus:
        """The clock as it stood at ``at``, computed from the history up to that instant.

        Datetimes in the result are shown in ``at``'s time zone.
        """
        now, shown, tz = self._at(at)
        (cycles,) = _run(record, (self,), now, self._walks)
        return SLAStatus.of(self.name, shown, tuple([self._figures(c, now, tz) for c in cycles]))

    def explain(self, record: Walkable, *, at: datetime) -> tuple[Moment, ...]:
        """The clock's story up to ``at``: each start, pause, resume, stop, warning and breach.

        Read from the same evaluation as :meth:`evaluate` (the clock as it stood after each
        event of the history, then the thresholds crossed in between), so it never tells
        another story than the figures. Moments are in time order (those at one instant in
        the order they happened), shown in ``at``'s time zone.

        >>> from datetime import UTC, datetime, timedelta
        >>> from itsmcore import BusinessCalendar, Incident, Priority
        >>> t = datetime(2025, 3, 3, 9, tzinfo=UTC)
        >>> inc = Incident.open(id="I1", title="VPN down", caller="mia", impact=2, urgency=2,
        ...                     at=t, by="desk")
        >>> inc = inc.hold(reason="awaiting_caller", at=t + timedelta(hours=1), by="sam")
        >>> inc = inc.resume(at=t + timedelta(hours=3), by="sam")
        >>> sla = SLADefinition.incident_resolution(dict.fromkeys(Priority, timedelta(hours=4)))
        >>> for m in sla.explain(inc, at=t + timedelta(hours=8)):
        ...     print(m.at.strftime("%H:%M"), m.what, m.business_elapsed)
        09:00 started 0:00:00
        10:00 paused 1:00:00
        12:00 resumed 1:00:00
        13:00 warning 50 % 2:00:00
        14:00 warning 75 % 3:00:00
        15:00 breached 4:00:00
        """
        end = require_aware(at, "at")
        tz = end.tzinfo or UTC
        now = to_us(end, "at")
        (cycles,) = _run(record, (self,), now, self._walks)
        moments = self._turns(cycles, tz)
        for cycle in self._status(cycles, now, tz).cycles:
            target = cycle.target
            if target is None:
                continue
            for fraction, when in cycle.warnings:
                if fraction < 1:
                    spent = target * fraction.numerator // fraction.denominator
                    moments.append(Moment(when, f"warning {float(fraction * 100):g} %", spent))
            if cycle.breached_at is not None:
                moments.append(Moment(cycle.breached_at, "breached", target))
        return tuple(sorted(moments, key=attrgetter("at")))

    def _turns(self, cycles: list[_Cycle], tz: Any) -> list[Moment]:
        """The stage changes of ``cycles``, read from their marks.

        As ``evaluate`` after each event would show them: marks at one instant are one
        change, and a cycle ended at the instant the next one starts (a reset) is told as
        that one's restart.
        """
        moments: list[Moment] = []
        stage = SLAStage.NOT_STARTED
        for n, cycle in enumerate(cycles):
            marks = cycle.marks
            following = cycles[n + 1].started if n + 1 < len(cycles) else None
            run = 0  # business time run in this cycle so far
            k = 0
            while k < len(marks):
                t = marks[k][0]
                if k and marks[k - 1][1] is _RUNNING:
                    run += self.calendar.elapsed_us(marks[k - 1][0], t)
                while k + 1 < len(marks) and marks[k + 1][0] == t:
                    k += 1
                state = marks[k][1]
                k += 1
                if k == len(marks) and t == following:
                    continue  # ended as the next cycle starts: told as its restart
                if n and t == cycle.started:
                    moments.append(Moment(from_us(t, tz), "restarted", MICROSECOND * run))
                elif state is not stage:
                    moments.append(Moment(from_us(t, tz), _STORY[stage, state], MICROSECOND * run))
                stage = state
        return moments

    def next_event_at(self, record: Walkable, *, at: datetime) -> datetime | None:
        """The next instant after ``at`` at which the status changes by time alone.

        That is the next warning threshold or the breach (one microsecond after the due
        instant), for a clock that is running. ``None`` when nothing will change by time
        alone: the clock is paused, completed or canceled (it changes only when the record
        does), has no target, or is breached with every warning crossed. This is what a
        scheduler needs to wake up exactly when something happens, without polling.
        """
        now, _, tz = self._at(at)
        (cycles,) = _run(record, (self,), now, self._walks)
        if not cycles or cycles[-1].state is not SLAStage.IN_PROGRESS:
            return None
        cycle = cycles[-1]
        target = self._target(cycle)
        if target is None:
            return None
        done = sum(self.calendar.elapsed_us(a, b) for a, b in cycle.spans(_RUNNING, now))
        marks = [m for m, _ in self._marks[target]] + [target + 1]
        pending = [m - done for m in marks if m > done]
        if not pending:  # breached, every warning crossed: nothing more happens by time
            return None
        return from_us(self.calendar.add_us(now, min(pending)), tz)

    def _target(self, cycle: _Cycle) -> int | None:
        return self._target_us.get(cycle.key) if cycle.target is _UNSET else cycle.target

    def _status(self, cycles: list[_Cycle], now: int, tz: Any) -> SLAStatus:
        return SLAStatus.of(
            self.name, from_us(now, tz), tuple([self._figures(c, now, tz) for c in cycles])
        )

    def _figures(self, cycle: _Cycle, now: int, tz: Any) -> CycleStatus:
        ended = cycle.ended
        end = now if ended is None else ended
        marks = cycle.marks
        # One business position per mark, shared by the spans on either side of it.
        ruler = self.calendar.ruler(cycle.started, end)
        times = [a for a, _ in marks]
        times.append(end)
        positions = ruler.positions(times)
        done = paused = wall_run = wall_paused = 0
        for k, (a, state) in enumerate(marks):
            if state is _RUNNING:
                done += positions[k + 1] - positions[k]
                wall_run += times[k + 1] - a
            elif state is _PAUSED:
                paused += positions[k + 1] - positions[k]
                wall_paused += times[k + 1] - a
        target = self._target_us.get(cycle.key) if cycle.target is _UNSET else cycle.target
        if target is None:
            return _new_cycle(
                CycleStatus,
                (
                    cycle.state, cycle.key, None, from_us(cycle.started, tz),
                    None if ended is None else from_us(ended, tz),
                    MICROSECOND * wall_run, MICROSECOND * done, MICROSECOND * wall_paused,
                    MICROSECOND * paused, None, None, False, None, None, (),
                ),
            )  # fmt: skip
        breached_at = None
        crossed: tuple[tuple[Fraction, datetime], ...] = ()
        if done:
            reached: list[tuple[int, Fraction | None]] = [
                (m, f) for m, f in self._marks[target] if 0 < m <= done
            ]
            if done >= target:
                reached.append((target, None))
            if reached:
                instants = _reached(ruler, marks, positions, [m for m, _ in reached])
                crossed = tuple(
                    [
                        (f, from_us(t, tz))
                        for (_, f), t in zip(reached, instants, strict=True)
                        if f is not None
                    ]
                )
        if done < target:
            due = from_us(ruler.instant(positions[-1] + target - done, not_before=end), tz)
        else:
            # Reached: due when the running time first held the target (at once for a
            # zero target); breached only once it holds more.
            due = from_us(instants[-1] if target else times[0], tz)
            if done > target:
                breached_at = due
        return _new_cycle(
            CycleStatus,
            (
                cycle.state, cycle.key, MICROSECOND * target, from_us(cycle.started, tz),
                None if ended is None else from_us(ended, tz),
                MICROSECOND * wall_run, MICROSECOND * done, MICROSECOND * wall_paused,
                MICROSECOND * paused, MICROSECOND * (target - done), due,
                breached_at is not None, breached_at, 100 * done / target if target else None,
                crossed,
            ),
        )  # fmt: skip


def _final_stages(d: SLADefinition) -> frozenset[SLAStage]:
    """The stages no later event can move a clock of ``d`` out of.

    Completed, when nothing reopens or resets the clock; canceled, when nothing resets it or
    attaches it again (a start condition that always holds has no second rising edge).
    """
    final = set()
    if d.reset is _never and d.reopen is Reopen.NONE:
        final.add(SLAStage.COMPLETED)
    if d.reset is _never and d.start is _always:
        final.add(SLAStage.CANCELED)
    return frozenset(final)


# --------------------------------------------------------------------------- preset conditions
# They read what a state means from the record's own workflow (its tags), never a state name,
# so they serve every practice and every vendor workflow.


def _responded(record: Any) -> bool:
    if getattr(record, "assignment_group", None) is not None:
        return True
    return bool(record.state != record.workflow.initial)


def _met(record: Any) -> bool:
    return record.state in record.workflow.tagged(MET)


def _canceled(record: Any) -> bool:
    return record.state in record.workflow.tagged(CANCELED)


def _paused(record: Any) -> bool:
    return record.state in record.workflow.tagged(PAUSED)


@attrs.frozen
class _PausedFor:
    """Paused, and for one of these hold reasons."""

    reasons: frozenset[str]

    def __call__(self, record: Any) -> bool:
        return _paused(record) and str(record.hold_reason) in self.reasons


@attrs.frozen
class _AssignedTo:
    group: str

    def __call__(self, record: Any) -> bool:
        return bool(record.assignment_group == self.group)


@attrs.frozen
class _AwayFrom:
    group: str
    on_hold: bool

    def __call__(self, record: Any) -> bool:
        return record.assignment_group != self.group or (self.on_hold and _paused(record))


# --------------------------------------------------------------------------- the clock machine


_UNSET: Final[Any] = object()
_RUNNING: Final = SLAStage.IN_PROGRESS
_PAUSED: Final = SLAStage.PAUSED
_ATTACHED: Final = (SLAStage.IN_PROGRESS, SLAStage.PAUSED)
_KEEP: Final = Reclassification.KEEP


class _Cycle:
    """One attachment of a clock: its state changes as ``(instant, state)`` marks.

    Instants are integer microseconds since the epoch, or, in the runs a machine remembers
    (see :class:`_Node`), the positions of the signature changes that made them.
    """

    __slots__ = ("ended", "key", "marks", "started", "state", "target")

    def __init__(self, when: int, key: Hashable, *, paused: bool) -> None:
        self.started = when
        self.key = key
        self.target: Any = _UNSET  # set when the class's target is frozen (KEEP)
        self.state = _PAUSED if paused else _RUNNING
        self.marks: list[tuple[int, SLAStage]] = [(when, self.state)]
        self.ended: int | None = None

    def move(self, when: int, state: SLAStage) -> None:
        if state is not self.state:
            self.state = state
            self.marks.append((when, state))
            self.ended = when if state not in _ATTACHED else None

    def copy(self) -> _Cycle:
        """A copy to move on, this one left as it is."""
        out = object.__new__(_Cycle)
        out.started, out.key, out.target = self.started, self.key, self.target
        out.state, out.ended, out.marks = self.state, self.ended, self.marks.copy()
        return out

    def placed(self, events: list[Event]) -> _Cycle:
        """This remembered cycle with its change positions replaced by ``events``' instants."""
        out = object.__new__(_Cycle)
        marks = out.marks = [((events[i].at - EPOCH) // MICROSECOND, s) for i, s in self.marks]
        out.started = marks[0][0]
        out.ended = None if self.ended is None else marks[-1][0]
        out.key, out.target, out.state = self.key, self.target, self.state
        return out

    def spans(self, state: SLAStage, end: int) -> list[tuple[int, int]]:
        """The intervals spent in ``state``, the last one cut at ``end``."""
        marks = self.marks
        out = []
        for k, (a, s) in enumerate(marks):
            if s is state:
                b = marks[k + 1][0] if k + 1 < len(marks) else end
                if b > a:
                    out.append((a, b))
        return out


def _run(
    record: Walkable,
    definitions: Sequence[SLADefinition],
    now: int,
    walks: dict[type, _Projections | None],
) -> list[list[_Cycle]]:
    """Walk ``record``'s history up to ``now`` once, driving one machine per definition.

    The walk follows only the fields the definitions declare they read when it can (see
    :class:`_Projections`); otherwise, and whenever that turns out not to be possible for
    this history, it replays the whole record. ``walks`` keeps, per record type, how these
    definitions walk it (the caller's cache).
    """
    if not record.history:
        raise ValidationError("the record has no history to evaluate")
    if len(definitions) > 1:
        return _run_each(record, definitions, now)
    projections = _walk_of(walks, type(record), definitions)
    if projections is not None and projections.cls is not None:
        try:
            return _drive(record, definitions, now, *projections.steps(record))
        except _Untracked as exc:  # a field to follow too, from the next history on
            projections.follow(exc.name)
        except _Untabulated:
            pass
    return _replayed(record, definitions, now)


def _walk_of(
    walks: dict[type, _Projections | None],
    record_type: type,
    definitions: Sequence[SLADefinition],
) -> _Projections | None:
    """How ``definitions`` walk records of ``record_type``, kept in ``walks`` once found."""
    try:
        return walks[record_type]
    except KeyError:
        found = walks[record_type] = _projections(record_type, definitions)
        return found


def _replayed(
    record: Walkable, definitions: Sequence[SLADefinition], now: int
) -> list[list[_Cycle]]:
    """The definitions' cycles from one replay of the whole record."""
    history = any(d._reads_history for d in definitions)  # noqa: SLF001 - same module
    return _drive(record, definitions, now, *record._steps(history=history))  # noqa: SLF001


def _run_each(
    record: Walkable, definitions: Sequence[SLADefinition], now: int
) -> list[list[_Cycle]]:
    """Several clocks of one record: those that follow a projection walk it each alone.

    The others share one replay. Walking a projection costs little per event and lets each
    clock stop when it is final on its own, where stepping several machines in one walk
    costs a call per event and machine; a replay costs much more, so it is shared.
    """
    out: list[list[_Cycle] | None] = []
    shared: list[SLADefinition] = []
    record_type = type(record)
    for d in definitions:
        walks = d._walks  # noqa: SLF001 - same module
        projections = _walk_of(walks, record_type, (d,))
        if projections is not None and projections.cls is not None:
            out.extend(_run(record, (d,), now, walks))
        else:
            out.append(None)
            shared.append(d)
    replayed = iter(_replayed(record, shared, now) if shared else ())
    return [next(replayed) if cycles is None else cycles for cycles in out]


def _drive(
    record: Walkable,
    definitions: Sequence[SLADefinition],
    now: int,
    scratch: Any,
    events: Iterator[Event],
) -> list[list[_Cycle]]:
    """Run one machine per definition over ``events``, reading ``scratch`` after each."""
    record_type = type(record)
    workflow = getattr(record, "workflow", None)
    if (record.history[-1].at - EPOCH) // MICROSECOND > now:
        # Evaluated in the past: the later events do not count.
        until = from_us(now)
        events = takewhile(lambda event: event.at <= until, events)
    if len(definitions) == 1:  # the usual case: follow the trie without a machine
        d = definitions[0]
        runs, getter = _held(d, record_type, workflow)
        if getter is not None:
            seen: list[Event] = []
            node, _ = _trace(
                d, runs, getter, scratch, events, node=runs.root, seen=seen, last=_UNSET
            )
            return [[c.placed(seen) for c in node.cycles]]
    machines = [_Machine(d, record_type, workflow) for d in definitions]
    if len(machines) == 1:
        machines[0].run(scratch, events)
        return [machines[0].result()]
    active = machines
    while len(active) > 1:  # in step, until all but one are final (or the events run out)
        event = next(events, None)
        if event is None:
            break
        for machine in active:
            machine.step(event, scratch)
        if any(m.final for m in active):
            active = [m for m in active if not m.final]
    if len(active) == 1:  # the last clock still running takes the rest of the same walk
        active[0].run(scratch, events)
    return [m.result() for m in machines]


# --------------------------------------------------------------------------- projections


class _Untracked(Exception):  # noqa: N818 - a signal inside this module, never raised out
    """A projection was asked for a field of the record that it does not follow."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Untabulated(Exception):  # noqa: N818 - a signal inside this module, never raised out
    """An event whose applier does not declare the fields it sets: replay the record."""


def _refuse(_record: Any, _event: Event) -> Mapping[str, Any]:
    raise _Untabulated


_PROJECTIONS: dict[tuple[type, frozenset[str]], _Projections] = {}


class _Projections:
    """How to walk a history following only some fields of its record, for one record type.

    A projection is a scratch record of a private subclass of the record's class holding
    only the *followed* fields (besides its id, state, workflow and opening), walked by the
    engine's own fold (``Record._advance``) with the class's own appliers, except that an
    applier none of whose declared fields (``@applies(sets=...)``) is followed is not run:
    its event changes only the state. So the clocks read, after each event, exactly the
    values the replayed record would hold, without building the rest of it.

    The followed fields are the definitions' declared reads, closed over the appliers that
    run: every field such an applier declares is followed too (a field in the projection is
    always current), and a field an applier or a condition reads that is not followed raises
    ``_Untracked``, after which it is followed as well (that one history is replayed). An
    event whose applier declares nothing raises ``_Untabulated`` and its history is replayed.
    """

    __slots__ = ("cls", "fields", "followed", "record_type", "walk")

    def __init__(self, record_type: Any, followed: frozenset[str]) -> None:
        self.record_type = record_type
        self.fields = frozenset(f.name for f in attrs.fields(record_type))
        self.cls: Any = None
        """The projection class; ``None`` once a history showed it cannot be followed."""
        self.walk: tuple[Any, Any, Any] = (None, None, None)
        """The class, opening filler and opening applier, replaced together (threads)."""
        self._follow(followed & self.fields)

    def _follow(self, followed: frozenset[str]) -> None:
        record_type = self.record_type
        writes: dict[Any, frozenset[str] | None] = record_type._writes  # noqa: SLF001
        closed = set(followed)
        grown = True
        while grown:  # close over the appliers that will run
            grown = False
            for declared in writes.values():
                if declared and not closed.isdisjoint(declared) and not declared <= closed:
                    closed |= declared
                    grown = True
        self.followed = frozenset(closed)
        fill = record_type._opening_of(self.followed)  # noqa: SLF001
        opening = record_type._opening_applier  # noqa: SLF001
        if opening is not None:
            opening = self._applier(writes.get(opening), opening)
        appliers = {
            event: self._applier(writes.get(applier), applier)
            for event, applier in record_type._appliers.items()  # noqa: SLF001
        }
        fields = self.fields

        def __getattr__(_self: Any, name: str) -> Any:  # noqa: N807 - the hook itself
            if name in fields:
                raise _Untracked(name)
            raise AttributeError(name)

        self.cls = cls = type(
            f"{record_type.__name__}Projection",
            (record_type,),
            {"__getattr__": __getattr__, "_appliers": appliers, "__module__": __name__},
        )
        self.walk = (cls, fill, opening)

    def _applier(self, declared: frozenset[str] | None, applier: Any) -> Any:
        if declared is None:
            return _refuse
        return applier if not self.followed.isdisjoint(declared) else _unchanged

    def steps(self, record: Any) -> tuple[Any, Iterator[Event]]:
        """A projection of ``record`` and its events, applied to it as they are yielded."""
        cls, fill, opening = self.walk
        history = record.history
        first = history[0]
        scratch: Any = object.__new__(cls)
        fill(scratch.__dict__, first, record.workflow)
        if opening is not None:
            scratch.__dict__.update(opening(scratch, first))
        return scratch, scratch._advance(history, history=False)  # noqa: SLF001

    def follow(self, name: str) -> None:
        """Follow ``name`` from now on (or replay every history, if it cannot be followed)."""
        if name not in self.fields or name in _HISTORY_FIELDS:
            self.cls = None
        else:
            self._follow(self.followed | {name})


def _projections(record_type: Any, definitions: Sequence[SLADefinition]) -> _Projections | None:
    """How to walk records of a type following the definitions' reads; ``None``: replay."""
    if getattr(record_type, "_writes", None) is None:  # not a record of the engine
        return None
    reads: set[str] = set()
    for d in definitions:
        if d.reads is None or d._reads_history:  # noqa: SLF001 - same module
            return None
        reads.update(d.reads)
    key = (record_type, frozenset(reads))
    found = _PROJECTIONS.get(key)
    if found is None:
        if len(_PROJECTIONS) >= _MEMO_LIMIT:
            _PROJECTIONS.clear()
        found = _PROJECTIONS[key] = _Projections(record_type, key[1])
    return found


class _Flags(NamedTuple):
    """What a definition's conditions say about one snapshot."""

    start: bool
    stop: bool
    pause: bool
    cancel: bool
    reset: bool
    key: Hashable
    plain: bool
    """Neither cancel, reset nor stop holds: only pause and the class can matter."""


_MEMO_LIMIT: Final = 4096


# Fields the presets read with a default, so that they serve kinds that lack them.
_OPTIONAL_READS: Final = frozenset({"assignment_group", "hold_reason"})


def _getter(definition: SLADefinition, record_type: type) -> Callable[[Any], Any] | None:
    """What a snapshot's conditions depend on: the declared fields this record type has.

    A preset names fields some kinds lack (``assignment_group``); its conditions read them
    with a default, so for such a kind they are simply not part of the signature. Any other
    declared field the record type lacks is a ``ValidationError`` (a definition does not
    know the record types it will meet, so this is found at the first evaluation).
    """
    reads = definition.reads
    if not reads:
        return None
    if attrs.has(record_type):
        names = {f.name for f in attrs.fields(record_type)}
        known = [r for r in reads if r in names or hasattr(record_type, r)]
        unknown = [r for r in reads if r not in known and r not in _OPTIONAL_READS]
        if unknown:
            raise ValidationError(
                f"{definition.name}: reads names {', '.join(map(repr, unknown))}, which "
                f"{record_type.__name__} records do not have"
            )
        reads = tuple(known)
    return attrgetter(*reads) if reads else None


class _Node:
    """A clock machine's state after a sequence of signature changes: a node of a trie.

    Histories whose declared fields change through the same sequence of values drive the
    machine through the same states; only the instants differ. So the machine runs once
    per sequence, on the positions of the changes (0, 1, 2 …) instead of instants, and
    remembers each state it reaches here, keyed by the signature that led to it. A walk
    then follows the trie and places the remembered cycles at its own instants
    (:meth:`_Cycle.placed`). The machine takes no decision on time, so that is exact.
    """

    __slots__ = ("children", "cycles", "final", "prev")

    def __init__(self, cycles: list[_Cycle], prev: _Flags | None, *, final: bool) -> None:
        self.children: dict[Any, _Node] = {}
        self.cycles = cycles
        self.prev = prev
        self.final = final


class _Runs:
    """The trie of one definition's runs for one record type and workflow."""

    __slots__ = ("memo", "root", "size")

    def __init__(self) -> None:
        self.root = _Node([], None, final=False)
        self.size = 0
        self.memo: dict[Any, _Flags] = {}


_RUNS_LIMIT: Final = 65_536
"""The most states a trie of runs keeps before it starts afresh (memory stays bounded)."""


def _held(d: SLADefinition, record_type: type, workflow: Any) -> tuple[_Runs, Any]:
    """The definition's runs and signature getter for a record type and workflow.

    A record runs on one workflow for its whole history, so the conditions' answers are
    remembered per record type and workflow: conditions may read the workflow (the presets
    read its tags) without it being part of each snapshot's signature, whose hashing would
    then call Workflow's Python-level __hash__. The snapshots may be the record's own
    (replayed) or its projection (see _Projections): the conditions read the same declared
    fields of either, so they share the answers.
    """
    key = (record_type, id(workflow))
    memos = d._memo  # noqa: SLF001 - the definition's own caches
    held = memos.get(key)
    if held is None or held[0] is not workflow:  # the id of a workflow since collected
        held = memos[key] = (workflow, _Runs(), _getter(d, record_type))
    return held[1], held[2]


def _trace(
    d: SLADefinition,
    runs: _Runs,
    getter: Callable[[Any], Any],
    record: Any,
    events: Iterable[Event],
    *,
    node: _Node,
    seen: list[Event],
    last: Any,
) -> tuple[_Node, Any]:
    """Follow the trie of remembered runs from ``node`` over ``events``, until final.

    The hot path of every evaluation. ``seen`` gets the events at which the signature
    changed; returns the node reached and the last signature read.
    """
    memo = runs.memo
    for event in events:
        signature = getter(record)
        if signature == last:
            continue
        last = signature
        child = node.children.get(signature)
        if child is None:
            flags = memo.get(signature)
            if flags is None:
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                flags = memo[signature] = d.flags(record)
            child = _grow(d, runs, node, signature, flags, position=len(seen))
        seen.append(event)
        node = child
        if child.final:
            break
    return node, last


def _grow(
    d: SLADefinition, runs: _Runs, node: _Node, signature: Any, flags: _Flags, *, position: int
) -> _Node:
    """The state after ``node`` when the signature changes to one not met there yet.

    That is the clock machine run one step from ``node``'s state, at the change's position.
    """
    if runs.size >= _RUNS_LIMIT:  # start afresh; this walk goes on from its own node
        runs.root = _Node([], None, final=False)
        runs.size = 0
    if flags is node.prev or flags == node.prev:  # nothing changes but the signature
        child = _Node(node.cycles, node.prev, final=node.final)
    else:
        machine = _Machine.resumed(d, node)
        machine.apply(position, flags)
        child = _Node(machine.cycles, machine.prev, final=machine.final)
    node.children[signature] = child
    runs.size += 1
    return child


class _Machine:
    """Folds the snapshots of a history into clock cycles.

    Per snapshot, in this order: cancel or reset, stop, pause/resume and reclassification,
    start (a clock attaches when its start condition becomes true). When the definition
    declares the fields its conditions read, snapshots that change none of them are
    skipped (nothing can change), condition results are memoized per combination, and the
    machine's runs are remembered per sequence of combinations (see :class:`_Node`).
    """

    __slots__ = ("cycles", "d", "final", "getter", "last", "node", "prev", "runs", "seen")

    def __init__(self, definition: SLADefinition, record_type: type, workflow: Any) -> None:
        self.d = definition
        self.cycles: list[_Cycle] = []
        self.prev: _Flags | None = None
        self.final = False
        """Whether no later event can change the clock: the walk may stop."""
        self.runs, self.getter = _held(definition, record_type, workflow)
        self.node = self.runs.root
        self.seen: list[Event] = []
        """The events at which the signature changed, in order: where the node's cycles are."""
        self.last: Any = _UNSET

    def run(self, record: Any, events: Iterable[Event]) -> None:
        """:meth:`step` through the events until the clock is final."""
        getter = self.getter
        if getter is None:  # every snapshot asks the conditions: no signature to compare
            for event in events:
                flags = self.d.flags(record)
                if flags != self.prev:
                    self.apply((event.at - EPOCH) // MICROSECOND, flags)
                    if self.final:
                        return
            return
        self.node, self.last = _trace(
            self.d,
            self.runs,
            getter,
            record,
            events,
            node=self.node,
            seen=self.seen,
            last=self.last,
        )
        self.final = self.node.final

    def step(self, event: Event, record: Any) -> None:
        """Take one snapshot of the record (as it is after ``event``) into the clock."""
        self.run(record, (event,))

    @classmethod
    def resumed(cls, definition: SLADefinition, node: _Node) -> _Machine:
        """A machine in the state ``node`` remembers, to move on from (see ``_grow``)."""
        machine = object.__new__(cls)
        machine.d = definition
        machine.cycles = [c.copy() for c in node.cycles]
        machine.prev = node.prev
        machine.final = node.final
        return machine

    def result(self) -> list[_Cycle]:
        """The cycles of the walk, at the instants of its events."""
        if self.getter is None:
            return self.cycles
        seen = self.seen
        return [c.placed(seen) for c in self.node.cycles]

    def apply(self, t: int, f: _Flags) -> None:
        prev = self.prev
        self.prev = f
        reset_edge = f.reset and (prev is None or not prev.reset)
        cycle = self.cycles[-1] if self.cycles else None
        state = None if cycle is None else cycle.state
        if cycle is not None and (state is _RUNNING or state is _PAUSED):
            if f.cancel:
                cycle.move(t, SLAStage.CANCELED)
            elif reset_edge:
                cycle.move(t, SLAStage.CANCELED)
                self.attach(t, f)
            elif f.stop:
                cycle.move(t, SLAStage.COMPLETED)
            elif f.key == cycle.key or self.d.reclassification is _KEEP:  # the usual case
                cycle.move(t, _PAUSED if f.pause else _RUNNING)
            else:
                self.reclassify(cycle, t, f)
        elif cycle is not None and state is SLAStage.COMPLETED:
            self.completed(cycle, t, f, reset=reset_edge)
        elif f.start and ((prev is None or not prev.start) or reset_edge):
            self.attach(t, f)
        cycles = self.cycles
        self.final = bool(cycles) and cycles[-1].state in self.d._final  # noqa: SLF001

    def completed(self, cycle: _Cycle, t: int, f: _Flags, *, reset: bool) -> None:
        """A met clock: a reset starts afresh; a reopen follows the definition's policy."""
        if reset:
            self.attach(t, f)
        elif not f.stop and not f.cancel:  # reopened
            if self.d.reopen is Reopen.RESUME:
                self.reclassify(cycle, t, f)
            elif self.d.reopen is Reopen.NEW_CYCLE:
                self.attach(t, f)

    def attach(self, t: int, f: _Flags) -> None:
        d = self.d
        if f.key not in d.targets:
            raise ValidationError(
                f"{d.name}: no target for {f.key!r}; known classes: "
                f"{', '.join(map(str, d.targets))}"
            )
        cycle = _Cycle(t, f.key, paused=f.pause)
        if d.reclassification is _KEEP:
            cycle.target = d._target_us[f.key]  # noqa: SLF001 - the definition's own table
        self.cycles.append(cycle)
        if f.cancel:  # attached and canceled at once: it never counts, but it is seen
            cycle.move(t, SLAStage.CANCELED)
        elif f.stop:  # met at the instant it started (e.g. logged already resolved)
            cycle.move(t, SLAStage.COMPLETED)

    def reclassify(self, cycle: _Cycle, t: int, f: _Flags) -> None:
        d = self.d
        if f.key != cycle.key and d.reclassification is not _KEEP:
            if f.key not in d.targets:
                raise ValidationError(f"{d.name}: no target for {f.key!r}")
            if d.reclassification is Reclassification.RESTART:
                cycle.move(t, SLAStage.CANCELED)
                self.attach(t, f)
                return
            cycle.key = f.key
        cycle.move(t, _PAUSED if f.pause else _RUNNING)


def _threshold(target: int, fraction: Fraction) -> int:
    """The business microseconds at which ``fraction`` of ``target`` is reached (rounded up)."""
    return -(-target * fraction.numerator // fraction.denominator)


def _reached(
    ruler: Ruler, marks: list[tuple[int, SLAStage]], positions: list[int], wanted: list[int]
) -> list[int]:
    """The earliest instants at which the running spans hold each of ``wanted``.

    ``wanted`` is ascending business microseconds, none above the business time run; one
    pass over the marks finds them all.
    """
    out: list[int] = []
    if not wanted:
        return out
    total = 0
    k_wanted = 0
    for k, (a, state) in enumerate(marks):
        if state is not _RUNNING:
            continue
        spent = positions[k + 1] - positions[k]
        while k_wanted < len(wanted) and total + spent >= wanted[k_wanted]:
            out.append(ruler.instant(positions[k] + wanted[k_wanted] - total, not_before=a))
            k_wanted += 1
        if k_wanted == len(wanted):
            return out
        total += spent
    return out  # pragma: no cover - every wanted mark is within the time run


# --------------------------------------------------------------------------- results


class CycleStatus(NamedTuple):
    """The figures of one clock cycle (an attachment, until completed or canceled)."""

    stage: SLAStage
    key: Hashable
    """The class the target was looked up by (usually a Priority)."""
    target: timedelta | None
    started_at: datetime | None
    """When the cycle started (``None`` only in the not-started placeholder)."""
    ended_at: datetime | None
    elapsed: timedelta
    """Wall-clock time the clock ran (pauses excluded)."""
    business_elapsed: timedelta
    """Business time the clock ran: what the target is measured against."""
    paused: timedelta
    business_paused: timedelta
    remaining: timedelta | None
    """Target less business elapsed; negative once breached."""
    due_at: datetime | None
    """When the target runs out if the clock runs from now on (pauses move it later)."""
    breached: bool
    breached_at: datetime | None
    percent: float | None
    """Business elapsed as a percentage of the target: one correctly rounded division of
    integer microseconds, so exactly 100.0 at the due instant and above it once breached."""
    warnings: tuple[tuple[Fraction, datetime], ...]
    """The warning thresholds crossed, with the instant each was crossed."""


class Moment(NamedTuple):
    """One turn in a clock's story (see :meth:`SLADefinition.explain`)."""

    at: datetime
    what: str
    """``started``, ``paused``, ``resumed``, ``completed``, ``canceled``, ``restarted``
    (a new cycle: a reset, or a reopen that starts afresh), ``warning 75 %``, ``breached``."""
    business_elapsed: timedelta
    """Business time the clock had run at that moment (within its cycle)."""


_STORY: Final = {
    (SLAStage.NOT_STARTED, SLAStage.IN_PROGRESS): "started",
    (SLAStage.NOT_STARTED, SLAStage.PAUSED): "started paused",
    (SLAStage.NOT_STARTED, SLAStage.COMPLETED): "started and completed",
    (SLAStage.NOT_STARTED, SLAStage.CANCELED): "canceled",
    (SLAStage.IN_PROGRESS, SLAStage.PAUSED): "paused",
    (SLAStage.IN_PROGRESS, SLAStage.COMPLETED): "completed",
    (SLAStage.IN_PROGRESS, SLAStage.CANCELED): "canceled",
    (SLAStage.IN_PROGRESS, SLAStage.NOT_STARTED): "detached",
    (SLAStage.PAUSED, SLAStage.IN_PROGRESS): "resumed",
    (SLAStage.PAUSED, SLAStage.COMPLETED): "completed",
    (SLAStage.PAUSED, SLAStage.CANCELED): "canceled",
    (SLAStage.PAUSED, SLAStage.NOT_STARTED): "detached",
    (SLAStage.COMPLETED, SLAStage.IN_PROGRESS): "resumed after reopening",
    (SLAStage.COMPLETED, SLAStage.PAUSED): "resumed after reopening, paused",
    (SLAStage.COMPLETED, SLAStage.CANCELED): "canceled",
    (SLAStage.COMPLETED, SLAStage.NOT_STARTED): "detached",
    (SLAStage.CANCELED, SLAStage.IN_PROGRESS): "resumed",
    (SLAStage.CANCELED, SLAStage.PAUSED): "resumed, paused",
    (SLAStage.CANCELED, SLAStage.COMPLETED): "completed",
    (SLAStage.CANCELED, SLAStage.NOT_STARTED): "detached",
}


_new_cycle: Final[Callable[[type[CycleStatus], tuple[Any, ...]], CycleStatus]] = tuple.__new__
"""Builds a ``CycleStatus`` from a tuple of its figures, without its keyword ``__new__``."""
_ZERO: Final = timedelta(0)
_NOT_STARTED: Final = CycleStatus(
    stage=SLAStage.NOT_STARTED,
    key=None,
    target=None,
    started_at=None,
    ended_at=None,
    elapsed=_ZERO,
    business_elapsed=_ZERO,
    paused=_ZERO,
    business_paused=_ZERO,
    remaining=None,
    due_at=None,
    breached=False,
    breached_at=None,
    percent=None,
    warnings=(),
)


# Not slotted: `of` fills the instance dict in one update, where the generated __init__
# setting eighteen frozen slots cost 1.1 µs on every evaluation (0.7 µs this way).
@attrs.frozen(slots=False)
class SLAStatus:
    """An SLA clock at one instant: its cycles, the current (last) one's figures up front.

    ``stage``, ``business_elapsed``, ``remaining``, ``due_at``, ``breached`` … are those of
    the current cycle (a not-started placeholder before the clock first attaches);
    ``cycles`` holds every cycle (one per start, reset or new cycle).
    """

    name: str
    evaluated_at: datetime
    cycles: tuple[CycleStatus, ...]
    stage: SLAStage
    """Where the clock is."""
    key: Hashable
    """The class the target comes from (usually a Priority)."""
    target: timedelta | None
    """The business-time target (``None``: best effort)."""
    started_at: datetime | None
    """When the current cycle started (``None`` before the clock attaches)."""
    ended_at: datetime | None
    """When it completed or was canceled."""
    elapsed: timedelta
    """Wall time run (pauses excluded)."""
    business_elapsed: timedelta
    """Business time run: what the target is measured against."""
    paused: timedelta
    """Wall time paused."""
    business_paused: timedelta
    """Business time paused."""
    remaining: timedelta | None
    """Target less business elapsed; negative once breached."""
    due_at: datetime | None
    """When the target runs out if the clock runs from now on."""
    breached: bool
    """Whether business elapsed exceeds the target."""
    breached_at: datetime | None
    """When it first exceeded it."""
    percent: float | None
    """Business elapsed as a percentage of the target."""
    warnings: tuple[tuple[Fraction, datetime], ...]
    """The warning thresholds crossed, with the instant each was crossed."""

    @classmethod
    def of(cls, name: str, evaluated_at: datetime, cycles: tuple[CycleStatus, ...]) -> SLAStatus:
        """The status whose current figures are those of the last of ``cycles``."""
        c = cycles[-1] if cycles else _NOT_STARTED
        status = object.__new__(cls)
        status.__dict__.update(
            name=name,
            evaluated_at=evaluated_at,
            cycles=cycles,
            stage=c.stage,
            key=c.key,
            target=c.target,
            started_at=c.started_at,
            ended_at=c.ended_at,
            elapsed=c.elapsed,
            business_elapsed=c.business_elapsed,
            paused=c.paused,
            business_paused=c.business_paused,
            remaining=c.remaining,
            due_at=c.due_at,
            breached=c.breached,
            breached_at=c.breached_at,
            percent=c.percent,
            warnings=c.warnings,
        )
        return status

    @property
    def current(self) -> CycleStatus:
        """The last cycle's figures (a not-started placeholder when none attached yet)."""
        return self.cycles[-1] if self.cycles else _NOT_STARTED

    def as_row(self) -> dict[str, Any]:
        """A flat dict of the current figures, for tables and DataFrames."""
        return {
            "sla": self.name,
            "stage": self.stage.value,
            "class": getattr(self.key, "name", self.key),
            "target": self.target,
            "started_at": self.started_at,
            "business_elapsed": self.business_elapsed,
            "elapsed": self.elapsed,
            "paused": self.paused,
            "business_paused": self.business_paused,
            "remaining": self.remaining,
            "due_at": self.due_at,
            "breached": self.breached,
            "breached_at": self.breached_at,
            "percent": self.percent,
            "cycles": len(self.cycles),
        }


@overload
def evaluate_many(
    records: Iterable[Walkable],
    definitions: Iterable[SLADefinition],
    *,
    at: datetime,
    frame: Literal[False] = False,
    fields: Iterable[str] = (),
) -> list[dict[str, Any]]: ...
@overload
def evaluate_many(
    records: Iterable[Walkable],
    definitions: Iterable[SLADefinition],
    *,
    at: datetime,
    frame: Literal[True],
    fields: Iterable[str] = (),
) -> Any: ...  # a pandas DataFrame (pandas ships no types here)


def evaluate_many(
    records: Iterable[Walkable],
    definitions: Iterable[SLADefinition],
    *,
    at: datetime,
    frame: bool = False,
    fields: Iterable[str] = (),
) -> Any:
    """Evaluate every definition on every record: one row per (record, definition).

    Returns a list of dicts (``record`` plus :meth:`SLAStatus.as_row`, plus each of the
    record's ``fields`` asked for, e.g. ``("assignment_group", "priority")``), or a pandas
    DataFrame with ``frame=True`` (needs the ``pandas`` extra). docs/sla.md lists the columns.
    """
    if isinstance(fields, str):
        raise ValidationError(f"fields takes a collection of field names, e.g. ({fields!r},)")
    extra = tuple(fields)
    defs = list(definitions)
    now = to_us(require_aware(at, "at"), "at")
    tz = at.tzinfo or UTC
    # A batch allocates many small objects and no cycles: the cyclic collector, triggered
    # by the allocations, would scan every record held in memory again and again (a third
    # of the time with 20,000 records). It is paused for the batch and restored after.
    paused = gc.isenabled()
    gc.disable()
    try:
        if frame:
            return _frame(records, defs, extra, now, tz)
        return _rows(records, defs, extra, now, tz)
    finally:
        if paused:
            gc.enable()


def _rows(
    records: Iterable[Walkable],
    defs: list[SLADefinition],
    extra: tuple[str, ...],
    now: int,
    tz: Any,
) -> list[dict[str, Any]]:
    rows = []
    walks: dict[type, _Projections | None] = {}
    for record in records:
        record_id, asked = _identify(record, extra)
        # One replay of the history drives every definition's clock.
        for d, cycles in zip(defs, _run(record, defs, now, walks), strict=True):
            rows.append(
                {"record": record_id, **d._status(cycles, now, tz).as_row(), **asked}  # noqa: SLF001
            )
    return rows


def _identify(record: Walkable, extra: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    try:
        return getattr(record, "id", None), {name: getattr(record, name) for name in extra}
    except AttributeError as exc:
        raise ValidationError(f"fields: {exc}") from None


# --------------------------------------------------------------------------- the frame

_US: Final = "timedelta64[us]"
_NAT: Final = -(2**63)  # numpy's NaT as an int64
_EXACT: Final = 2**53  # integers a float64 holds exactly


def _frame(
    records: Iterable[Walkable],
    defs: list[SLADefinition],
    extra: tuple[str, ...],
    now: int,
    tz: Any,
) -> Any:
    """``evaluate_many(frame=True)``: the clocks walked per record, the figures per column.

    The walk and the clock machine are the scalar path's; only the arithmetic of
    ``_figures`` (business positions, sums, due and breach instants) runs on whole columns,
    one definition at a time. Columns have fixed types whatever the data (docs/sla.md).
    """
    try:
        import numpy as np  # noqa: PLC0415 - optional extra
        import pandas as pd  # noqa: PLC0415 - optional extra
    except ImportError as exc:  # pragma: no cover - pandas is in the test extra
        raise ImportError("frame=True needs pandas: pip install 'itsmcore[pandas]'") from exc
    ids: list[Any] = []
    walks: dict[type, _Projections | None] = {}
    asked: dict[str, list[Any]] = {name: [] for name in extra}
    walked: list[list[list[_Cycle]]] = [[] for _ in defs]
    for record in records:
        record_id, values = _identify(record, extra)
        ids.append(record_id)
        for name, value in values.items():
            asked[name].append(value)
        for per_definition, cycles in zip(walked, _run(record, defs, now, walks), strict=True):
            per_definition.append(cycles)
    parts = [_columns(np, d, cycles, now) for d, cycles in zip(defs, walked, strict=True)]
    # Rows record by record, each record's definitions in order (as evaluate_many's rows).
    n, k = len(ids), len(defs)
    columns: dict[str, Any] = {
        "record": np.repeat(np.array(ids, dtype=object), k),
        "sla": np.tile(np.array([d.name for d in defs], dtype=object), n),
    }
    for name in parts[0] if parts else _COLUMN_TYPES:
        merged = np.empty(n * k, dtype=parts[0][name].dtype if parts else object)
        for j, part in enumerate(parts):
            merged[j::k] = part[name]
        columns[name] = merged
    out = pd.DataFrame({name: _typed(pd, name, v, tz) for name, v in columns.items()})
    for name, column in asked.items():  # typed as pandas reads the values
        out[name] = pd.Series(column).repeat(k).reset_index(drop=True)
    return out


_COLUMN_TYPES: Final = {
    "stage": "object", "class": "object", "target": _US, "started_at": "instant",
    "business_elapsed": _US, "elapsed": _US, "paused": _US, "business_paused": _US,
    "remaining": _US, "due_at": "instant", "breached": "bool", "breached_at": "instant",
    "percent": "float64", "cycles": "int64",
}  # fmt: skip
"""The frame's columns after ``record`` and ``sla``, and their types."""


def _typed(pd: Any, name: str, values: Any, tz: Any) -> Any:
    kind = _COLUMN_TYPES.get(name, "object")
    if kind == "instant":
        return pd.to_datetime(values.view("datetime64[us]"), utc=True).tz_convert(tz)
    if kind == _US:
        return values.view(_US)
    return values


def _columns(np: Any, d: SLADefinition, walked: list[list[_Cycle]], now: int) -> dict[str, Any]:
    """The figures of every record's current cycle under ``d``, as int64/float/bool arrays.

    Instants and durations are int64 microseconds, ``_NAT`` where missing.
    """
    counts = np.array([len(c) for c in walked], dtype=np.int64)
    out = _empty_columns(np, counts)
    rows = np.flatnonzero(counts)
    current = [walked[r][-1] for r in rows.tolist()]
    if not current:
        return out
    for r, c in zip(rows.tolist(), current, strict=True):
        out["stage"][r] = c.state.value
        out["class"][r] = getattr(c.key, "name", c.key)
    segs = _Segments(np, current, now)
    try:
        ruler = d.calendar.ruler(int(segs.a.min()), int(max(segs.b.max(), now)))
    except ValidationError:  # more than one question may cover: figure each record alone
        return _columns_alone(np, d, rows=rows, current=current, now=now, out=out)
    pos_a = ruler.positions_array(segs.a)
    business = ruler.positions_array(segs.b) - pos_a
    wall = segs.b - segs.a
    running, paused = segs.state == 0, segs.state == 1
    spent = np.where(running, business, 0)
    done = segs.total(spent)
    out["business_elapsed"][rows] = done
    out["business_paused"][rows] = segs.total(np.where(paused, business, 0))
    out["elapsed"][rows] = segs.total(np.where(running, wall, 0))
    out["paused"][rows] = segs.total(np.where(paused, wall, 0))
    started = np.array([c.started for c in current], dtype=np.int64)
    out["started_at"][rows] = started
    targets = [d._target(c) for c in current]  # noqa: SLF001 - same module
    has = np.array([t is not None for t in targets], dtype=bool)
    target = np.array([0 if t is None else t for t in targets], dtype=np.int64)
    out["target"][rows[has]] = target[has]
    out["remaining"][rows[has]] = (target - done)[has]
    due = np.full(len(current), _NAT, dtype=np.int64)
    # Running on: due when the rest of the target has run from the end of the cycle.
    short = has & (done < target)
    if short.any():
        ends = segs.ends[short]
        due[short] = ruler.instants_array(
            ruler.positions_array(ends) + (target - done)[short], ends
        )
    # Reached: due when the running time first held the target (at once for a zero target).
    reached = has & (done >= target)
    due[reached & (target == 0)] = started[reached & (target == 0)]
    held = reached & (target > 0)
    if held.any():
        before = segs.running_before(spent)
        crossing = running & (before + spent >= target[segs.row]) & held[segs.row]
        first = segs.first_per_row(crossing)
        rows_held = segs.row[first]
        due[rows_held] = ruler.instants_array(
            pos_a[first] + target[rows_held] - before[first], segs.a[first]
        )
    out["due_at"][rows] = due
    breached = has & (done > target)
    out["breached"][rows] = breached
    out["breached_at"][rows[breached]] = due[breached]
    out["percent"][rows] = _percent(np, done, target, has & (target > 0))
    return out


def _empty_columns(np: Any, counts: Any) -> dict[str, Any]:
    """Every row as a clock not started yet (no cycle)."""
    n = len(counts)
    missing = np.full(n, _NAT, dtype=np.int64)
    zero = np.zeros(n, dtype=np.int64)
    return {
        "stage": np.full(n, SLAStage.NOT_STARTED.value, dtype=object),
        "class": np.full(n, None, dtype=object),
        "target": missing.copy(),
        "started_at": missing.copy(),
        "business_elapsed": zero.copy(),
        "elapsed": zero.copy(),
        "paused": zero.copy(),
        "business_paused": zero.copy(),
        "remaining": missing.copy(),
        "due_at": missing.copy(),
        "breached": np.zeros(n, dtype=bool),
        "breached_at": missing.copy(),
        "percent": np.full(n, np.nan),
        "cycles": counts,
    }


def _percent(np: Any, done: Any, target: Any, positive: Any) -> Any:
    """``100 * done / target`` as Python computes it: one correctly rounded division."""
    percent = np.full(len(done), np.nan)
    exact = positive & (done < _EXACT // 100)  # 100 * done converts to float exactly
    percent[exact] = (100 * done[exact]).astype(np.float64) / target[exact]
    for j in np.flatnonzero(positive & ~exact).tolist():
        percent[j] = 100 * int(done[j]) / int(target[j])
    return percent


_STATE_CODES: Final = {_RUNNING: 0, _PAUSED: 1}


class _Segments:
    """The current cycles' marks as segments ``[a, b)`` in one state, row by row, in order.

    ``state`` is 0 running, 1 paused, 2 ended; every row has at least one segment.
    """

    def __init__(self, np: Any, current: list[_Cycle], now: int) -> None:
        counts = np.array([len(c.marks) for c in current], dtype=np.int64)
        instants, states = zip(*[mark for c in current for mark in c.marks], strict=True)
        self.np = np
        self.row = np.repeat(np.arange(len(current), dtype=np.int64), counts)
        self.a = np.array(instants, dtype=np.int64)
        # Each segment ends where the next one starts; a row's last at its cycle's end.
        self.starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        last = self.starts + counts - 1
        self.b = np.empty_like(self.a)
        self.b[:-1] = self.a[1:]
        self.ends = np.array([now if c.ended is None else c.ended for c in current], np.int64)
        """Per row, where its cycle ends (``now`` for one still attached)."""
        self.b[last] = self.ends
        self.state = np.array([_STATE_CODES.get(s, 2) for s in states], dtype=np.int8)

    def total(self, values: Any) -> Any:
        """The sum of ``values`` per row."""
        return self.np.add.reduceat(values, self.starts)

    def running_before(self, values: Any) -> Any:
        """Per segment, the sum of ``values`` over the earlier segments of its row."""
        np = self.np
        inclusive = np.cumsum(values)
        row_base = (inclusive - values)[self.starts]  # the sum before each row's first
        return inclusive - values - row_base[self.row]

    def first_per_row(self, mask: Any) -> Any:
        """The index of the first segment of each row where ``mask`` holds (rows with any)."""
        where = self.np.flatnonzero(mask)
        _, first = self.np.unique(self.row[where], return_index=True)
        return where[first]


def _columns_alone(
    np: Any,
    d: SLADefinition,
    *,
    rows: Any,
    current: list[_Cycle],
    now: int,
    out: dict[str, Any],
) -> dict[str, Any]:
    """The columns from each record's own figures (a span no single question may cover)."""
    for r, c in zip(rows.tolist(), current, strict=True):
        f = d._figures(c, now, UTC)  # noqa: SLF001 - same module
        out["started_at"][r] = c.started
        for name, value in (
            ("target", f.target),
            ("business_elapsed", f.business_elapsed),
            ("elapsed", f.elapsed),
            ("paused", f.paused),
            ("business_paused", f.business_paused),
            ("remaining", f.remaining),
        ):
            out[name][r] = _NAT if value is None else value // MICROSECOND
        for name, instant in (("due_at", f.due_at), ("breached_at", f.breached_at)):
            out[name][r] = _NAT if instant is None else to_us(instant)
        out["breached"][r] = f.breached
        out["percent"][r] = np.nan if f.percent is None else f.percent
    return out
