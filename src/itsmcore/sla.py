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

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

import attrs

from itsmcore._time import EPOCH, MICROSECOND, from_us, require_aware, to_us
from itsmcore.calendar import BusinessCalendar, Ruler
from itsmcore.errors import DefinitionError, ValidationError
from itsmcore.priority import Priority

if TYPE_CHECKING:
    from itsmcore.events import Event

__all__ = [
    "Condition",
    "CycleStatus",
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
    """A record whose history the engine can replay (``Incident`` and the other practices)."""

    @property
    def history(self) -> Sequence[Event]: ...

    def walk(self, on_step: Callable[[Event, Any], object], *, history: bool = True) -> None: ...


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
    CANCELLED = "cancelled"


class Reclassification(StrEnum):
    """What happens when the target's input (usually the priority) changes mid-flight.

    No policy loses paused time: it stays with the cycle it was spent in.
    """

    RECOMPUTE = "recompute"
    """Same cycle, same start, elapsed time kept; the target becomes the new class's (iTop)."""
    RESTART = "restart"
    """The running cycle is cancelled and a new one starts at the change (ServiceNow)."""
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
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise DefinitionError(f"warnings must be fractions of the target: {exc}") from exc
    if any(f <= 0 for f in out):
        raise DefinitionError("warnings must be positive fractions of the target (0.5 = 50 %)")
    return out


def _field_names(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


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
    kind: SLAKind = SLAKind.SLA
    reclassification: Reclassification = Reclassification.RECOMPUTE
    reopen: Reopen = Reopen.RESUME
    warnings: tuple[Fraction, ...] = attrs.field(default=_DEFAULT_WARNINGS, converter=_fractions)
    reads: tuple[str, ...] | None = attrs.field(default=None, converter=_field_names)
    """The record fields the conditions and ``classify`` read, if they read nothing else.

    Declaring them lets evaluation skip events that change none of them and remember the
    conditions' answers per combination of values; the presets declare theirs. Leave it
    ``None`` for conditions that read anything else (history, time, other records).
    """
    _memo: dict[Any, _Flags] = attrs.field(
        factory=dict, init=False, eq=False, repr=False, hash=False
    )
    _target_us: dict[Hashable, int | None] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )
    _marks: dict[int, tuple[tuple[int, Fraction], ...]] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )
    _reads_history: bool = attrs.field(init=False, eq=False, repr=False, hash=False)

    def flags(self, record: Any) -> _Flags:
        """Every condition's answer, and the class, for one snapshot of a record."""
        return _Flags(
            bool(self.start(record)),
            bool(self.stop(record)),
            bool(self.pause(record)),
            bool(self.cancel(record)),
            bool(self.reset(record)),
            self.classify(record),
        )

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
        # Keeping a replayed snapshot's history current costs a tuple per event: only if read.
        object.__setattr__(
            self,
            "_reads_history",
            self.reads is None or not _HISTORY_FIELDS.isdisjoint(self.reads),
        )
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
    def incident_response(
        cls,
        targets: Mapping[Any, timedelta | None],
        calendar: BusinessCalendar = _UTC_ALWAYS,
        *,
        name: str = "incident response",
        reclassification: Reclassification = Reclassification.RECOMPUTE,
        warnings: Iterable[Fraction | float | str] = _DEFAULT_WARNINGS,
    ) -> SLADefinition:
        """Time to respond: runs from opening until the incident is first assigned or worked.

        Met by the first assignment or by leaving New (started, put on hold, resolved);
        cancelled if the incident is canceled first. Final once met.
        """
        return cls(
            name=name,
            targets=targets,
            calendar=calendar,
            start=_always,
            stop=_responded,
            cancel=_canceled,
            reclassification=reclassification,
            reopen=Reopen.NONE,
            warnings=warnings,
            reads=("state", "assignment_group", "priority"),
        )

    @classmethod
    def incident_resolution(
        cls,
        targets: Mapping[Any, timedelta | None],
        calendar: BusinessCalendar = _UTC_ALWAYS,
        *,
        name: str = "incident resolution",
        pause_on: Iterable[str] | None = None,
        reopen: Reopen = Reopen.RESUME,
        reclassification: Reclassification = Reclassification.RECOMPUTE,
        warnings: Iterable[Fraction | float | str] = _DEFAULT_WARNINGS,
    ) -> SLADefinition:
        """Time to resolve: runs from opening, paused while on hold, met when resolved.

        ``pause_on`` limits pausing to chosen hold reasons (e.g. awaiting the caller, not
        awaiting a vendor, whose delay is still ours towards the customer). A reopened
        incident's clock counts on by default (``reopen=Reopen.NEW_CYCLE`` starts afresh).
        Cancelled if the incident is canceled.
        """
        reasons = None if pause_on is None else frozenset(str(r) for r in pause_on)
        return cls(
            name=name,
            targets=targets,
            calendar=calendar,
            start=_always,
            stop=_resolved,
            pause=_on_hold if reasons is None else _OnHoldFor(reasons),
            cancel=_canceled,
            reclassification=reclassification,
            reopen=reopen,
            warnings=warnings,
            reads=("state", "hold_reason", "priority"),
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
        reclassification: Reclassification = Reclassification.RECOMPUTE,
        warnings: Iterable[Fraction | float | str] = _DEFAULT_WARNINGS,
    ) -> SLADefinition:
        """An operational level agreement for one assignment group.

        The group's clock attaches when the incident is first assigned to it and runs only
        while it is assigned to the group (and, by default, not on hold); met at resolution.
        """
        if not isinstance(group, str) or not group:
            raise DefinitionError("an OLA needs the assignment group it binds")
        return cls(
            name=name or f"OLA {group}",
            kind=SLAKind.OLA,
            targets=targets,
            calendar=calendar,
            start=_AssignedTo(group),
            stop=_resolved,
            pause=_AwayFrom(group, on_hold=pause_on_hold),
            cancel=_canceled,
            reclassification=reclassification,
            reopen=Reopen.RESUME,
            warnings=warnings,
            reads=("state", "hold_reason", "assignment_group", "priority"),
        )

    # ----------------------------------------------------------------------- evaluation

    def evaluate(self, record: Walkable, *, at: datetime) -> SLAStatus:
        """The clock as it stood at ``at``, computed from the history up to that instant.

        Datetimes in the result are shown in ``at``'s time zone.
        """
        now = to_us(require_aware(at, "at"), "at")
        (cycles,) = _run(record, (self,), now)
        return self._status(cycles, now, at.tzinfo or UTC)

    def next_event_at(self, record: Walkable, *, at: datetime) -> datetime | None:
        """The next instant after ``at`` at which the status changes by time alone.

        That is the next warning threshold or the breach (one microsecond after the due
        instant), for a clock that is running. ``None`` when nothing will change by time
        alone: the clock is paused, completed or cancelled (it changes only when the record
        does), has no target, or is breached with every warning crossed. This is what a
        scheduler needs to wake up exactly when something happens, without polling.
        """
        now = to_us(require_aware(at, "at"), "at")
        (cycles,) = _run(record, (self,), now)
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
        return from_us(self.calendar.add_us(now, min(pending)), at.tzinfo or UTC)

    def _target(self, cycle: _Cycle) -> int | None:
        return self._target_us.get(cycle.key) if cycle.target is _UNSET else cycle.target

    def _status(self, cycles: list[_Cycle], now: int, tz: Any) -> SLAStatus:
        return SLAStatus(
            self.name, from_us(now, tz), tuple(self._figures(c, now, tz) for c in cycles)
        )

    def _figures(self, cycle: _Cycle, now: int, tz: Any) -> CycleStatus:
        end = now if cycle.ended is None else cycle.ended
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
        target = self._target(cycle)
        breached_at = due = None
        crossed: tuple[tuple[Fraction, datetime], ...] = ()
        if target is not None:
            thresholds = self._marks[target]
            reached: list[tuple[int, Fraction | None]] = [
                (m, f) for m, f in thresholds if 0 < m <= done
            ]
            if done >= target:
                reached.append((target, None))
            instants = _reached(ruler, marks, positions, [m for m, _ in reached])
            crossed = tuple(
                [(f, from_us(t, tz)) for (_, f), t in zip(reached, instants, strict=True) if f]
            )
            if done < target:
                due = ruler.instant(positions[-1] + target - done, not_before=end)
            else:
                # Reached: due when the running time first held the target (at once for a
                # zero target); breached only once it holds more.
                due = instants[-1] if target else times[0]
                breached_at = due if done > target else None
        return CycleStatus(
            cycle.state,
            cycle.key,
            None if target is None else MICROSECOND * target,
            from_us(cycle.started, tz),
            None if cycle.ended is None else from_us(cycle.ended, tz),
            MICROSECOND * wall_run,
            MICROSECOND * done,
            MICROSECOND * wall_paused,
            MICROSECOND * paused,
            None if target is None else MICROSECOND * (target - done),
            None if due is None else from_us(due, tz),
            breached_at is not None,
            None if breached_at is None else from_us(breached_at, tz),
            None if not target else 100 * done / target,
            crossed,
        )


# --------------------------------------------------------------------------- preset conditions


def _responded(record: Any) -> bool:
    return record.assignment_group is not None or record.state != "new"


def _resolved(record: Any) -> bool:
    return record.state in ("resolved", "closed")


def _canceled(record: Any) -> bool:
    return bool(record.state == "canceled")


def _on_hold(record: Any) -> bool:
    return bool(record.state == "on_hold")


@attrs.frozen
class _OnHoldFor:
    reasons: frozenset[str]

    def __call__(self, record: Any) -> bool:
        return record.state == "on_hold" and str(record.hold_reason) in self.reasons


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
        return record.assignment_group != self.group or (self.on_hold and record.state == "on_hold")


# --------------------------------------------------------------------------- the clock machine


class _Done(Exception):  # noqa: N818 - control flow, never escapes this module
    """Stops a walk at the evaluation instant."""


_UNSET: Final[Any] = object()
_RUNNING: Final = SLAStage.IN_PROGRESS
_PAUSED: Final = SLAStage.PAUSED
_ATTACHED: Final = (SLAStage.IN_PROGRESS, SLAStage.PAUSED)
_KEEP: Final = Reclassification.KEEP


class _Cycle:
    """One attachment of a clock: its state changes as ``(instant, state)`` marks."""

    __slots__ = ("ended", "key", "marks", "started", "state", "target")

    def __init__(self, when: datetime, key: Hashable, *, paused: bool) -> None:
        started = (when - EPOCH) // MICROSECOND
        self.started = started
        self.key = key
        self.target: Any = _UNSET  # set when the class's target is frozen (KEEP)
        self.state = _PAUSED if paused else _RUNNING
        self.marks: list[tuple[int, SLAStage]] = [(started, self.state)]
        self.ended: int | None = None

    def move(self, when: datetime, state: SLAStage) -> None:
        if state is not self.state:
            at = (when - EPOCH) // MICROSECOND
            self.state = state
            self.marks.append((at, state))
            self.ended = at if state not in _ATTACHED else None

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


def _run(record: Walkable, definitions: Sequence[SLADefinition], now: int) -> list[list[_Cycle]]:
    """Replay ``record``'s history up to ``now`` once, driving one machine per definition."""
    if not record.history:
        raise ValidationError("the record has no history to evaluate")
    machines = [_Machine(d) for d in definitions]
    until = from_us(now)
    history = any(d._reads_history for d in definitions)  # noqa: SLF001 - same module

    if record.history[-1].at <= until:  # the usual case: the whole history counts
        if len(machines) == 1:
            record.walk(machines[0].step, history=history)
            return [machines[0].cycles]

        def step_all(event: Event, snapshot: Any) -> None:
            for machine in machines:
                machine.step(event, snapshot)

        record.walk(step_all, history=history)
        return [m.cycles for m in machines]

    def step_until(event: Event, snapshot: Any) -> None:
        if event.at > until:
            raise _Done
        for machine in machines:
            machine.step(event, snapshot)

    with suppress(_Done):
        record.walk(step_until, history=history)
    return [m.cycles for m in machines]


class _Flags(NamedTuple):
    """What a definition's conditions say about one snapshot."""

    start: bool
    stop: bool
    pause: bool
    cancel: bool
    reset: bool
    key: Hashable


_MEMO_LIMIT: Final = 4096


class _Machine:
    """Folds the snapshots of a history into clock cycles.

    Per snapshot, in this order: cancel or reset, stop, pause/resume and reclassification,
    start (a clock attaches when its start condition becomes true). When the definition
    declares the fields its conditions read, snapshots that change none of them are
    skipped (nothing can change) and condition results are memoized per combination.
    """

    __slots__ = ("cycles", "d", "getter", "last", "memo", "prev")

    def __init__(self, definition: SLADefinition) -> None:
        self.d = definition
        self.cycles: list[_Cycle] = []
        self.prev: _Flags | None = None
        self.getter = attrgetter(*definition.reads) if definition.reads else None
        self.memo = definition._memo  # noqa: SLF001 - the definition's own cache, shared
        self.last: Any = _UNSET

    def step(self, event: Event, record: Any) -> None:
        getter = self.getter
        if getter is None:
            flags = self.d.flags(record)
        else:
            signature = getter(record)
            if signature == self.last:
                return
            self.last = signature
            known = self.memo.get(signature)
            if known is None:
                if len(self.memo) >= _MEMO_LIMIT:
                    self.memo.clear()
                known = self.memo[signature] = self.d.flags(record)
            flags = known
        # The same answers as before change nothing (see apply): skip them.
        if flags is not self.prev and flags != self.prev:
            self.apply(event.at, flags)

    def apply(self, t: datetime, f: _Flags) -> None:
        prev = self.prev
        self.prev = f
        reset_edge = f.reset and (prev is None or not prev.reset)
        cycle = self.cycles[-1] if self.cycles else None
        state = None if cycle is None else cycle.state
        if cycle is not None and (state is _RUNNING or state is _PAUSED):
            if f.cancel:
                cycle.move(t, SLAStage.CANCELLED)
            elif reset_edge:
                cycle.move(t, SLAStage.CANCELLED)
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

    def completed(self, cycle: _Cycle, t: datetime, f: _Flags, *, reset: bool) -> None:
        """A met clock: a reset starts afresh; a reopen follows the definition's policy."""
        if reset:
            self.attach(t, f)
        elif not f.stop and not f.cancel:  # reopened
            if self.d.reopen is Reopen.RESUME:
                self.reclassify(cycle, t, f)
            elif self.d.reopen is Reopen.NEW_CYCLE:
                self.attach(t, f)

    def attach(self, t: datetime, f: _Flags) -> None:
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
        if f.cancel:  # attached and cancelled at once: it never counts, but it is seen
            cycle.move(t, SLAStage.CANCELLED)
        elif f.stop:  # met at the instant it started (e.g. logged already resolved)
            cycle.move(t, SLAStage.COMPLETED)

    def reclassify(self, cycle: _Cycle, t: datetime, f: _Flags) -> None:
        d = self.d
        if f.key != cycle.key and d.reclassification is not _KEEP:
            if f.key not in d.targets:
                raise ValidationError(f"{d.name}: no target for {f.key!r}")
            if d.reclassification is Reclassification.RESTART:
                cycle.move(t, SLAStage.CANCELLED)
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
    """The figures of one clock cycle (an attachment, until completed or cancelled)."""

    stage: SLAStage
    key: Hashable
    """The class the target was looked up by (usually a Priority)."""
    target: timedelta | None
    started_at: datetime
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


_ZERO: Final = timedelta(0)
_NOT_STARTED: Final = CycleStatus(
    stage=SLAStage.NOT_STARTED,
    key=None,
    target=None,
    started_at=None,  # type: ignore[arg-type] # a clock that never started has no start
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


class SLAStatus:
    """An SLA clock at one instant: its cycles, the current (last) one's figures up front.

    ``stage``, ``business_elapsed``, ``remaining``, ``due_at``, ``breached`` … are those of
    the current cycle; ``cycles`` holds every cycle (one per start, reset or new cycle).
    """

    __slots__ = ("cycles", "evaluated_at", "name")

    def __init__(self, name: str, evaluated_at: datetime, cycles: tuple[CycleStatus, ...]) -> None:
        self.name = name
        self.evaluated_at = evaluated_at
        self.cycles = cycles

    @property
    def current(self) -> CycleStatus:
        """The last cycle's figures (a not-started placeholder when none attached yet)."""
        return self.cycles[-1] if self.cycles else _NOT_STARTED

    stage = property(lambda self: self.current.stage, doc="Where the clock is.")
    key = property(lambda self: self.current.key, doc="The class the target comes from.")
    target = property(lambda self: self.current.target, doc="The business-time target.")
    started_at = property(lambda self: self.current.started_at, doc="When the cycle started.")
    ended_at = property(lambda self: self.current.ended_at, doc="When it completed or ended.")
    elapsed = property(lambda self: self.current.elapsed, doc="Wall time run.")
    business_elapsed = property(
        lambda self: self.current.business_elapsed, doc="Business time run."
    )
    paused = property(lambda self: self.current.paused, doc="Wall time paused.")
    business_paused = property(
        lambda self: self.current.business_paused, doc="Business time paused."
    )
    remaining = property(lambda self: self.current.remaining, doc="Target less business elapsed.")
    due_at = property(lambda self: self.current.due_at, doc="When the target runs out.")
    breached = property(lambda self: self.current.breached, doc="Whether the target is exceeded.")
    breached_at = property(lambda self: self.current.breached_at, doc="When it was exceeded.")
    percent = property(lambda self: self.current.percent, doc="Percentage of the target.")
    warnings = property(lambda self: self.current.warnings, doc="Thresholds crossed, and when.")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SLAStatus):
            return NotImplemented
        return (self.name, self.evaluated_at, self.cycles) == (
            other.name,
            other.evaluated_at,
            other.cycles,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.evaluated_at, self.cycles))

    def __repr__(self) -> str:
        c = self.current
        return (
            f"SLAStatus({self.name!r}, stage={c.stage.value}, "
            f"business_elapsed={c.business_elapsed}, remaining={c.remaining}, "
            f"due_at={c.due_at}, breached={c.breached}, "
            f"cycles={len(self.cycles)})"
        )

    def as_row(self) -> dict[str, Any]:
        """A flat dict of the current figures, for tables and DataFrames."""
        c = self.current
        return {
            "sla": self.name,
            "stage": c.stage.value,
            "class": getattr(c.key, "name", c.key),
            "target": c.target,
            "started_at": c.started_at,
            "business_elapsed": c.business_elapsed,
            "elapsed": c.elapsed,
            "paused": c.paused,
            "remaining": c.remaining,
            "due_at": c.due_at,
            "breached": c.breached,
            "breached_at": c.breached_at,
            "percent": c.percent,
            "cycles": len(self.cycles),
        }


def evaluate_many(
    records: Iterable[Walkable],
    definitions: Iterable[SLADefinition],
    *,
    at: datetime,
    frame: bool = False,
) -> Any:
    """Evaluate every definition on every record: one row per (record, definition).

    Returns a list of dicts (``record`` plus :meth:`SLAStatus.as_row`), or a pandas
    DataFrame with ``frame=True`` (needs the ``pandas`` extra).
    """
    defs = list(definitions)
    now = to_us(require_aware(at, "at"), "at")
    tz = at.tzinfo or UTC
    rows = []
    for record in records:
        record_id = getattr(record, "id", None)
        # One replay of the history drives every definition's clock.
        for d, cycles in zip(defs, _run(record, defs, now), strict=True):
            rows.append({"record": record_id, **d._status(cycles, now, tz).as_row()})  # noqa: SLF001
    if not frame:
        return rows
    try:
        import pandas as pd  # noqa: PLC0415 - optional extra
    except ImportError as exc:  # pragma: no cover - pandas is in the test extra
        raise ImportError("frame=True needs pandas: pip install 'itsmcore[pandas]'") from exc
    return pd.DataFrame(rows)
