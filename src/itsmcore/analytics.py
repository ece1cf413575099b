"""Service-management KPIs as pure functions over records, exact and decomposable.

Each KPI takes an iterable of records and the instant it is asked ``at`` (aware): every
record is read as it was at that instant (events after it are ignored, records opened after
it are left out), so "what did MTTR say on 1 March" is the same call with an earlier ``at``.
``docs/kpis.md`` defines each KPI: its formula, what is counted, and the edge cases.

Results are lists of small frozen rows, one per group (``by=`` names a record field, or is
a function of the record; ``by=None`` gives one row), or a pandas DataFrame of the same
rows with ``frame=True`` (needs the ``pandas`` extra; the core imports without it).

**Beyond one machine.** Every KPI is computed in two steps: ``*_partial(records, ...)``
returns a :class:`Partial` (integer sums and counts per group, what one partition
contributes), :func:`combine` adds partials up, and :func:`finish` turns the total into
rows. The KPI itself is ``finish(*_partial(records, ...))``, so running the partial step on
each partition of a pandas groupby, a Dask DataFrame or a Spark ``mapInPandas`` and
combining the results gives exactly the single-process answer: sums are integers
(microseconds), and the one division happens in :func:`finish`.
"""

# The walk reads each record as it was at an instant through the engine's in-place fold
# (record._steps), as the SLA engine and routing do.
# ruff: noqa: SLF001

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import islice, pairwise
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, cast, overload

import attrs

from itsmcore._time import MICROSECOND, from_us, require_aware, to_us, zone
from itsmcore.change import Change, ChangeState, ChangeType, CloseCode
from itsmcore.errors import ValidationError
from itsmcore.incident import Incident
from itsmcore.record import Record
from itsmcore.sla import SLADefinition, SLAStage, evaluate_many
from itsmcore.workflow import ACTIVE, CANCELED, MET

if TYPE_CHECKING:
    from itsmcore.calendar import BusinessCalendar

__all__ = [
    "DEFAULT_AGE_BUCKETS",
    "AgeingRow",
    "BacklogRow",
    "ComplianceRow",
    "DurationRow",
    "Partial",
    "RateRow",
    "ReassignmentRow",
    "RecurringRow",
    "ageing",
    "ageing_partial",
    "backlog",
    "backlog_partial",
    "change_success_rate",
    "change_success_rate_partial",
    "combine",
    "emergency_change_ratio",
    "emergency_change_ratio_partial",
    "finish",
    "first_contact_resolution",
    "first_contact_resolution_partial",
    "mtta",
    "mtta_partial",
    "mttr",
    "mttr_partial",
    "reassignment",
    "reassignment_partial",
    "reopen_rate",
    "reopen_rate_partial",
    "series",
    "sla_compliance",
    "sla_compliance_partial",
    "top_recurring",
    "top_recurring_partial",
]

Key = Callable[[Any], Hashable]
By = str | Callable[[Any], Hashable] | None
"""A record field's name, ``"month"`` (the month of opening, ``"2025-03"``, in UTC), a
function of the record, or ``None`` for one row over everything."""

_DAY: Final = timedelta(days=1)
DEFAULT_AGE_BUCKETS: Final = (_DAY, 3 * _DAY, 7 * _DAY, 14 * _DAY, 30 * _DAY)
"""Bucket edges of :func:`ageing`: under 1 day, 1-3, 3-7, 7-14, 14-30, 30 days and more."""
_FAILED: Final = frozenset({CloseCode.UNSUCCESSFUL, CloseCode.BACKED_OUT})


# --------------------------------------------------------------------------- rows


@attrs.frozen(kw_only=True)
class DurationRow:
    """A mean duration (MTTA, MTTR) of one group."""

    group: Hashable
    count: int
    """Records measured: acknowledged (MTTA) or resolved (MTTR) as of ``at``."""
    pending: int
    """Records in scope not there yet: still unacknowledged, or unresolved."""
    mean: timedelta | None
    """Mean wall-clock duration; ``None`` when nothing was measured."""
    business_mean: timedelta | None
    """Mean duration in business time on the calendar given; ``None`` without one."""


@attrs.frozen(kw_only=True)
class RateRow:
    """A rate (first-contact resolution, reopen rate, change success ...) of one group."""

    group: Hashable
    count: int
    """The denominator: records the rate is over."""
    hits: int
    """The numerator: those of them that count."""
    rate: float | None
    """``hits / count``; ``None`` when ``count`` is 0."""


@attrs.frozen(kw_only=True)
class ComplianceRow:
    """SLA compliance of one definition within one group."""

    sla: str
    group: Hashable
    count: int
    """Clocks completed as of ``at`` that had a target."""
    met: int
    """Those of them not breached."""
    rate: float | None
    """``met / count``; ``None`` when no clock completed."""


@attrs.frozen(kw_only=True)
class BacklogRow:
    """How many records were open at one instant (in one group)."""

    at: datetime
    group: Hashable
    open: int


@attrs.frozen(kw_only=True)
class AgeingRow:
    """How many open records are aged within ``[low, high)`` (``high=None``: no bound)."""

    group: Hashable
    low: timedelta
    high: timedelta | None
    count: int


@attrs.frozen(kw_only=True)
class ReassignmentRow:
    """Reassignment counts of one group: their mean and their distribution."""

    group: Hashable
    count: int
    """Records counted."""
    mean: float | None
    """Mean reassignments per record; ``None`` when ``count`` is 0."""
    distribution: tuple[tuple[int, int], ...]
    """``(reassignments, records)`` pairs, fewest reassignments first."""


@attrs.frozen(kw_only=True)
class RecurringRow:
    """A key (a CI, category, service ...) and how often incidents were opened on it."""

    key: Hashable
    count: int
    first_seen: datetime
    last_seen: datetime


# --------------------------------------------------------------------------- partials


_Ops = tuple[Callable[[int, int], int], ...]


def _add(a: int, b: int) -> int:
    return a + b


@attrs.frozen(kw_only=True, eq=True, hash=False)
class Partial:
    """What one partition contributes to a KPI: integer sums and counts per group.

    ``kpi`` names the KPI, ``options`` the settings that must agree for partials to
    combine (a calendar was given, the buckets, the instants ...), and ``sums`` maps each
    group to one integer per column of the KPI (``columns``). Combine partials with
    :func:`combine` (or ``+``) and turn the total into rows with :func:`finish`.
    """

    kpi: str
    options: tuple[tuple[str, Any], ...]
    sums: Mapping[Hashable, tuple[int, ...]]

    @property
    def columns(self) -> tuple[str, ...]:
        """The names of the integers each group holds."""
        return _SPECS[self.kpi].columns

    def __add__(self, other: object) -> Partial:
        if not isinstance(other, Partial):
            return NotImplemented
        return combine((self, other))

    def to_frame(self) -> Any:
        """The partial as a pandas DataFrame: ``kpi``, ``options``, ``group`` and the sums.

        This is what a partition function returns to Dask or Spark; :meth:`from_frame`
        reads the concatenated frames back (and combines rows of the same group).
        """
        pd = _pandas()
        names = ("kpi", "options", "group", *self.columns)
        rows = [(self.kpi, self.options, key, *values) for key, values in self.sums.items()]
        frame = pd.DataFrame.from_records(rows, columns=list(names))
        for name in ("kpi", "options", "group"):
            frame[name] = frame[name].astype(object)
        for name in self.columns:
            frame[name] = frame[name].astype("int64")
        return frame

    @classmethod
    def from_frame(cls, frame: Any) -> Partial:
        """The partial that frames of :meth:`to_frame` (concatenated) hold, combined.

        An empty frame needs its ``kpi`` and ``options`` from somewhere: pass at least one
        partition's frame, even one without groups, by concatenating every partition's.
        """
        try:
            kpis = frame["kpi"].tolist()
            options = frame["options"].tolist()
            groups = frame["group"].tolist()
        except (KeyError, TypeError, AttributeError):
            raise ValidationError(
                "from_frame reads a DataFrame made by Partial.to_frame (columns kpi, options, "
                "group and the sums)"
            ) from None
        if not kpis:
            raise ValidationError(
                "the frame has no rows: a partial with no groups says nothing of its KPI; "
                "combine Partial objects instead"
            )
        spec = _spec(kpis[0])
        values = [frame[name].tolist() for name in spec.columns]
        parts = [
            cls(kpi=k, options=_freeze(o), sums={_group(g): tuple(int(v[i]) for v in values)})
            for i, (k, o, g) in enumerate(zip(kpis, options, groups, strict=True))
        ]
        return combine(parts)


def _group(value: Any) -> Any:
    """A group read back from a frame: a missing one (NaN, ``pd.NA``) is ``None`` again."""
    if isinstance(value, float) and value != value:  # noqa: PLR0124 - NaN is not itself
        return None
    if type(value).__name__ == "NAType":
        return None
    return value


def _freeze(value: Any) -> Any:
    """Options read back from a frame: lists (as pyarrow may hand them back) as tuples."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


class _Spec(NamedTuple):
    columns: tuple[str, ...]
    ops: _Ops
    finish: Callable[[Partial], list[Any]]
    row: type


def _spec(kpi: object) -> _Spec:
    spec = _SPECS.get(kpi) if isinstance(kpi, str) else None
    if spec is None:
        raise ValidationError(f"unknown KPI {kpi!r}; known: {', '.join(sorted(_SPECS))}")
    return spec


def combine(partials: Iterable[Partial]) -> Partial:
    """Add partials of one KPI (computed with the same options) up, group by group.

    The result is the partial of all their records together, exactly: the order and the
    partitioning do not matter.

    Raises:
        ValidationError: no partial, something not a partial, or partials of different KPIs
            or options.
    """
    items = list(partials)
    if not items:
        raise ValidationError("combine needs at least one partial (each knows its KPI)")
    first = items[0]
    for item in items:
        if not isinstance(item, Partial):
            raise ValidationError(f"combine takes Partial objects, got {type(item).__name__}")
        if (item.kpi, item.options) != (first.kpi, first.options):
            raise ValidationError(
                f"cannot combine a {item.kpi} partial with options {dict(item.options)} "
                f"with a {first.kpi} partial with options {dict(first.options)}"
            )
    ops = _spec(first.kpi).ops
    sums: dict[Hashable, tuple[int, ...]] = {}
    for item in items:
        for key, values in item.sums.items():
            have = sums.get(key)
            sums[key] = (
                values
                if have is None
                else tuple(op(a, b) for op, a, b in zip(ops, have, values, strict=True))
            )
    return Partial(kpi=first.kpi, options=first.options, sums=sums)


@overload
def finish(partial: Partial, *, frame: Literal[False] = False) -> list[Any]: ...
@overload
def finish(partial: Partial, *, frame: Literal[True]) -> Any: ...
def finish(partial: Partial, *, frame: bool = False) -> Any:
    """The KPI's rows from its (combined) partial, or a DataFrame of them with ``frame=True``."""
    if not isinstance(partial, Partial):
        raise ValidationError(f"finish takes a Partial, got {type(partial).__name__}")
    spec = _spec(partial.kpi)
    rows = spec.finish(partial)
    return _frame(spec.row, rows) if frame else rows


def _frame(row: type, rows: list[Any]) -> Any:
    pd = _pandas()
    names = [f.name for f in attrs.fields(row)]
    return pd.DataFrame.from_records([attrs.astuple(r, recurse=False) for r in rows], columns=names)


def _pandas() -> Any:
    try:
        import pandas as pd  # noqa: PLC0415 - optional extra, only for frames
    except ImportError as exc:  # pragma: no cover - pandas is in the test extra
        raise ImportError("frames need pandas: pip install 'itsmcore[pandas]'") from exc
    return pd


# --------------------------------------------------------------------------- input checks


def _records(records: Iterable[Any], kind: type[Record] | None = None) -> list[Record]:
    """The records as a list: ``Record``s of one kind (``kind``'s, when given)."""
    if isinstance(records, Record):
        raise ValidationError("pass an iterable of records, not one record")
    try:
        out = list(records)
    except TypeError:
        raise ValidationError(f"records must be an iterable, got {records!r}") from None
    first_kind: str | None = None
    for record in out:
        if not isinstance(record, Record):
            raise ValidationError(f"KPIs are computed over records, got {type(record).__name__}")
        if kind is not None and not isinstance(record, kind):
            raise ValidationError(
                f"this KPI is computed over {kind.kind} records, got a {record.kind} ({record.id})"
            )
        if first_kind is None:
            first_kind = record.kind
        elif record.kind != first_kind:
            raise ValidationError(
                f"records of one kind only: got {first_kind} records and a {record.kind} "
                f"({record.id}); compute the KPI per kind"
            )
    return out


def _month(record: Any) -> str:
    return str(record.opened_at.astimezone(UTC).strftime("%Y-%m"))


def _key(by: By, records: Sequence[Record]) -> Key | None:
    if by is None:
        return None
    if by == "month":
        return _month
    if isinstance(by, str):
        for record in records[:1]:
            if not hasattr(record, by):
                raise ValidationError(
                    f"by={by!r}: a {record.kind} has no field {by!r}; name a field, 'month', "
                    "or pass a function of the record"
                )
        return attrgetter(by)
    if callable(by):
        return by
    raise ValidationError(f"by must be a field name, 'month', a function or None, got {by!r}")


def _calendar(calendar: object) -> BusinessCalendar | None:
    from itsmcore.calendar import BusinessCalendar  # noqa: PLC0415 - a type check only

    if calendar is None or isinstance(calendar, BusinessCalendar):
        return calendar
    raise ValidationError(f"calendar must be a BusinessCalendar, got {type(calendar).__name__}")


# --------------------------------------------------------------------------- the walk


class _AsOf(NamedTuple):
    """A record as it was at an instant, with what its history says up to then."""

    record: Any
    """The record as it was (a scratch copy: read it, do not keep it past the next walk)."""
    acknowledged: datetime | None
    """First instant with an assignee, or out of the initial state and not canceled."""
    met_since: datetime | None
    """When it last entered a state tagged ``met``, if it is in one."""
    ever_met: bool
    canceled: bool
    active: bool


_AT: Final = attrgetter("at")


def _as_of(record: Record, at: datetime, *, history: bool) -> _AsOf | None:
    """``record`` as it was at ``at`` (``None`` if it was opened after ``at``)."""
    events = record.history
    k = len(events) if events[-1].at <= at else bisect_right(events, at, key=_AT)
    if k == 0:
        return None
    workflow = record.workflow
    initial = workflow.initial
    met, canceled = workflow.tagged(MET), workflow.tagged(CANCELED)
    scratch, stream = record._steps(history=history)
    acknowledged = met_since = None
    ever_met = False
    for event in islice(stream, k):
        state = scratch.state
        if acknowledged is None and (
            getattr(scratch, "assignee", None) is not None
            or (state != initial and state not in canceled)
        ):
            acknowledged = event.at
        if state in met:
            if met_since is None:
                met_since, ever_met = event.at, True
        else:
            met_since = None
    state = scratch.state
    return _AsOf(
        scratch,
        acknowledged,
        met_since,
        ever_met,
        state in canceled,
        state in workflow.tagged(ACTIVE),
    )


def _reads_history(key: Key | None) -> bool:
    """Whether ``key`` may read a record's history (a function of the caller's may)."""
    return key is not None and key is not _month and not isinstance(key, attrgetter)


def _walked(
    listed: list[Record], at: datetime, key: Key | None
) -> Iterable[tuple[Hashable, _AsOf]]:
    """Each record opened by ``at``, as of ``at``, with its group."""
    history = _reads_history(key)
    for record in listed:
        found = _as_of(record, at, history=history)
        if found is not None:
            yield (None if key is None else key(found.record)), found


def _at(at: object) -> datetime:
    return require_aware(at, "at")


def _grouped(key: Key | None) -> tuple[str, bool]:
    return ("grouped", key is not None)


def _bump(sums: dict[Hashable, list[int]], group: Hashable, width: int) -> list[int]:
    found = sums.get(group)
    if found is None:
        found = sums[group] = [0] * width
    return found


def _partial(kpi: str, options: Iterable[tuple[str, Any]], sums: Mapping[Hashable, Any]) -> Partial:
    return Partial(kpi=kpi, options=tuple(options), sums={k: tuple(v) for k, v in sums.items()})


def _ordered(keys: Iterable[Hashable]) -> list[Hashable]:
    """Groups in a stable order: sorted when they compare, ``None`` last."""
    keys = list(keys)
    present = [k for k in keys if k is not None]
    try:
        ordered = sorted(present)  # type: ignore[type-var]
    except TypeError:
        ordered = sorted(present, key=repr)
    return ordered + [None] * (len(present) != len(keys))


def _pairs(partial: Partial) -> Iterable[tuple[Any, Any, tuple[int, ...]]]:
    """The ``(first, second, values)`` of a partial whose groups are pairs."""
    for pair, values in partial.sums.items():
        first, second = cast("tuple[Any, Any]", pair)
        yield first, second, values


def _opt(partial: Partial, name: str) -> Any:
    return dict(partial.options)[name]


def _groups_of(partial: Partial) -> list[Hashable]:
    """The partial's groups in order; ``[None]`` for an ungrouped KPI (a row even if empty)."""
    if not _opt(partial, "grouped"):
        return [None]
    return _ordered(partial.sums)


# --------------------------------------------------------------------------- MTTA and MTTR


def _durations(
    kpi: str,
    records: Iterable[Any],
    *,
    at: object,
    by: By,
    calendar: object,
    end: Callable[[_AsOf], datetime | None],
) -> Partial:
    at = _at(at)
    cal = _calendar(calendar)
    listed = _records(records)
    key = _key(by, listed)
    sums: dict[Hashable, list[int]] = {}
    for group, found in _walked(listed, at, key):
        if found.canceled:
            continue
        row = _bump(sums, group, 4)
        stop = end(found)
        if stop is None:
            row[1] += 1
            continue
        start = found.record.opened_at
        row[0] += 1
        row[2] += (stop - start) // MICROSECOND
        if cal is not None:
            row[3] += cal.elapsed_us(to_us(start), to_us(stop))
    return _partial(kpi, (_grouped(key), ("business", cal is not None)), sums)


def _finish_durations(partial: Partial) -> list[DurationRow]:
    business = _opt(partial, "business")
    rows = []
    for group in _groups_of(partial):
        count, pending, wall, busy = partial.sums.get(group, (0, 0, 0, 0))
        rows.append(
            DurationRow(
                group=group,
                count=count,
                pending=pending,
                mean=_mean(wall, count),
                business_mean=_mean(busy, count) if business else None,
            )
        )
    return rows


def _mean(total_us: int, count: int) -> timedelta | None:
    """The mean of ``count`` durations summing to ``total_us``, rounded as timedelta does."""
    return timedelta(microseconds=total_us) / count if count else None


def mtta_partial(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = None,
    calendar: BusinessCalendar | None = None,
) -> Partial:
    """The partial aggregate of :func:`mtta` (sums and counts per group)."""
    return _durations(
        "mtta", incidents, at=at, by=by, calendar=calendar, end=attrgetter("acknowledged")
    )


def mttr_partial(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = None,
    calendar: BusinessCalendar | None = None,
) -> Partial:
    """The partial aggregate of :func:`mttr` (sums and counts per group)."""
    return _durations(
        "mttr", incidents, at=at, by=by, calendar=calendar, end=attrgetter("met_since")
    )


@overload
def mtta(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = None,
    calendar: BusinessCalendar | None = None,
    frame: Literal[False] = False,
) -> list[DurationRow]: ...
@overload
def mtta(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = None,
    calendar: BusinessCalendar | None = None,
    frame: Literal[True],
) -> Any: ...
def mtta(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = None,
    calendar: BusinessCalendar | None = None,
    frame: bool = False,
) -> Any:
    """Mean time to acknowledge: from opening to the first assignee or the start of work.

    A record is acknowledged at the first event after which it names an assignee (a
    person), or is out of its workflow's initial state in a state not tagged ``canceled``.
    Records not acknowledged by ``at`` are ``pending``; canceled ones are left out. With
    ``calendar``, ``business_mean`` is the mean in its business time.
    """
    return finish(mtta_partial(incidents, at=at, by=by, calendar=calendar), frame=frame)  # type: ignore[call-overload]


@overload
def mttr(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = None,
    calendar: BusinessCalendar | None = None,
    frame: Literal[False] = False,
) -> list[DurationRow]: ...
@overload
def mttr(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = None,
    calendar: BusinessCalendar | None = None,
    frame: Literal[True],
) -> Any: ...
def mttr(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = None,
    calendar: BusinessCalendar | None = None,
    frame: bool = False,
) -> Any:
    """Mean time to resolve: from opening to the resolution that stands at ``at``.

    Counted over the records in a state tagged ``met`` (resolved, closed) at ``at``, up to
    when they last entered one: a reopened incident counts once, to its last resolution,
    and while reopened it is ``pending``. Wall time includes time on hold. Canceled
    records are left out. With ``calendar``, ``business_mean`` is the mean in its business
    time.
    """
    return finish(mttr_partial(incidents, at=at, by=by, calendar=calendar), frame=frame)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- rates


def _rates(
    kpi: str,
    records: Iterable[Any],
    *,
    at: object,
    by: By,
    kind: type[Record] | None,
    judge: Callable[[_AsOf], bool | None],
) -> Partial:
    """``judge`` says whether a record counts (``True``), not (``False``), or is out (``None``)."""
    at = _at(at)
    listed = _records(records, kind)
    key = _key(by, listed)
    sums: dict[Hashable, list[int]] = {}
    for group, found in _walked(listed, at, key):
        verdict = judge(found)
        if verdict is None:
            continue
        row = _bump(sums, group, 2)
        row[0] += 1
        row[1] += verdict
    return _partial(kpi, (_grouped(key),), sums)


def _finish_rates(partial: Partial) -> list[RateRow]:
    rows = []
    for group in _groups_of(partial):
        count, hits = partial.sums.get(group, (0, 0))
        rows.append(
            RateRow(group=group, count=count, hits=hits, rate=hits / count if count else None)
        )
    return rows


def _fcr(found: _AsOf) -> bool | None:
    if found.canceled or found.met_since is None:
        return None
    return bool(found.record.first_contact_resolution)


def first_contact_resolution_partial(
    incidents: Iterable[Any], *, at: datetime, by: By = None
) -> Partial:
    """The partial aggregate of :func:`first_contact_resolution`."""
    return _rates("first_contact_resolution", incidents, at=at, by=by, kind=Incident, judge=_fcr)


@overload
def first_contact_resolution(
    incidents: Iterable[Any], *, at: datetime, by: By = None, frame: Literal[False] = False
) -> list[RateRow]: ...
@overload
def first_contact_resolution(
    incidents: Iterable[Any], *, at: datetime, by: By = None, frame: Literal[True]
) -> Any: ...
def first_contact_resolution(
    incidents: Iterable[Any], *, at: datetime, by: By = None, frame: bool = False
) -> Any:
    """Share of the incidents resolved at ``at`` that were resolved at first contact.

    First contact (``Incident.first_contact_resolution``): resolved by the first assignee
    (or, never assigned, by whoever logged it), with no reassignment, no functional
    escalation and no reopening. Counted over incidents resolved or closed at ``at``;
    open and canceled ones are left out.
    """
    partial = first_contact_resolution_partial(incidents, at=at, by=by)
    return finish(partial, frame=frame)  # type: ignore[call-overload]


def _reopened(found: _AsOf) -> bool | None:
    if found.canceled or not found.ever_met:
        return None
    try:
        return bool(found.record.reopen_count > 0)
    except AttributeError:
        raise ValidationError(f"a {found.record.kind} is never reopened: no reopen rate") from None


def reopen_rate_partial(records: Iterable[Any], *, at: datetime, by: By = None) -> Partial:
    """The partial aggregate of :func:`reopen_rate`."""
    return _rates("reopen_rate", records, at=at, by=by, kind=None, judge=_reopened)


@overload
def reopen_rate(
    records: Iterable[Any], *, at: datetime, by: By = None, frame: Literal[False] = False
) -> list[RateRow]: ...
@overload
def reopen_rate(
    records: Iterable[Any], *, at: datetime, by: By = None, frame: Literal[True]
) -> Any: ...
def reopen_rate(records: Iterable[Any], *, at: datetime, by: By = None, frame: bool = False) -> Any:
    """Share of the records resolved at least once by ``at`` that were reopened since.

    Denominator: records that reached a state tagged ``met`` at least once by ``at``
    (whatever their state now, canceled ones aside); numerator: those of them reopened at
    least once by ``at``. A record reopened twice counts once.
    """
    return finish(reopen_rate_partial(records, at=at, by=by), frame=frame)  # type: ignore[call-overload]


def _succeeded(found: _AsOf) -> bool | None:
    change = found.record
    if change.state != ChangeState.CLOSED or change.close_code is None:
        return None
    return change.close_code not in _FAILED


def change_success_rate_partial(changes: Iterable[Any], *, at: datetime, by: By = None) -> Partial:
    """The partial aggregate of :func:`change_success_rate`."""
    return _rates("change_success_rate", changes, at=at, by=by, kind=Change, judge=_succeeded)


@overload
def change_success_rate(
    changes: Iterable[Any], *, at: datetime, by: By = None, frame: Literal[False] = False
) -> list[RateRow]: ...
@overload
def change_success_rate(
    changes: Iterable[Any], *, at: datetime, by: By = None, frame: Literal[True]
) -> Any: ...
def change_success_rate(
    changes: Iterable[Any], *, at: datetime, by: By = None, frame: bool = False
) -> Any:
    """Share of the changes closed by ``at`` whose implementation succeeded.

    Over changes closed (reviewed) by ``at`` with a close code; successful and successful
    with issues count, unsuccessful and backed out do not (as ``change_measures``).
    """
    return finish(change_success_rate_partial(changes, at=at, by=by), frame=frame)  # type: ignore[call-overload]


def _emergency(found: _AsOf) -> bool:
    return bool(found.record.change_type == ChangeType.EMERGENCY)


def emergency_change_ratio_partial(
    changes: Iterable[Any], *, at: datetime, by: By = None
) -> Partial:
    """The partial aggregate of :func:`emergency_change_ratio`."""
    return _rates("emergency_change_ratio", changes, at=at, by=by, kind=Change, judge=_emergency)


@overload
def emergency_change_ratio(
    changes: Iterable[Any], *, at: datetime, by: By = None, frame: Literal[False] = False
) -> list[RateRow]: ...
@overload
def emergency_change_ratio(
    changes: Iterable[Any], *, at: datetime, by: By = None, frame: Literal[True]
) -> Any: ...
def emergency_change_ratio(
    changes: Iterable[Any], *, at: datetime, by: By = None, frame: bool = False
) -> Any:
    """Share of emergency changes among the changes requested by ``at`` (canceled too)."""
    return finish(emergency_change_ratio_partial(changes, at=at, by=by), frame=frame)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- reassignment


def reassignment_partial(records: Iterable[Any], *, at: datetime, by: By = None) -> Partial:
    """The partial aggregate of :func:`reassignment`: records per (group, reassignments)."""
    at = _at(at)
    listed = _records(records)
    key = _key(by, listed)
    sums: dict[Hashable, list[int]] = {}
    for group, found in _walked(listed, at, key):
        if found.canceled:
            continue
        try:
            moves = int(found.record.reassignment_count)
        except AttributeError:
            raise ValidationError(
                f"a {found.record.kind} is not assigned: no reassignment count"
            ) from None
        _bump(sums, (group, moves), 1)[0] += 1
    return _partial("reassignment", (_grouped(key),), sums)


def _finish_reassignment(partial: Partial) -> list[ReassignmentRow]:
    per: dict[Hashable, dict[int, int]] = {}
    for group, moves, (n,) in _pairs(partial):
        per.setdefault(group, {})[moves] = n
    groups = _ordered(per) if _opt(partial, "grouped") else [None]
    rows = []
    for group in groups:
        counts = per.get(group, {})
        count = sum(counts.values())
        total = sum(k * n for k, n in counts.items())
        rows.append(
            ReassignmentRow(
                group=group,
                count=count,
                mean=total / count if count else None,
                distribution=tuple(sorted(counts.items())),
            )
        )
    return rows


@overload
def reassignment(
    records: Iterable[Any], *, at: datetime, by: By = None, frame: Literal[False] = False
) -> list[ReassignmentRow]: ...
@overload
def reassignment(
    records: Iterable[Any], *, at: datetime, by: By = None, frame: Literal[True]
) -> Any: ...
def reassignment(
    records: Iterable[Any], *, at: datetime, by: By = None, frame: bool = False
) -> Any:
    """The reassignment counts as of ``at``: their distribution and mean per group.

    Over every record opened by ``at``, open or resolved, canceled ones aside. The count
    is ServiceNow's: each change of assignment group, to or from none.
    """
    return finish(reassignment_partial(records, at=at, by=by), frame=frame)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- SLA compliance


def sla_compliance_partial(
    records: Iterable[Any],
    definitions: Iterable[SLADefinition],
    *,
    at: datetime,
    by: By = None,
) -> Partial:
    """The partial aggregate of :func:`sla_compliance`: per (definition, group)."""
    at = _at(at)
    defs = list(definitions) if not isinstance(definitions, SLADefinition) else [definitions]
    for d in defs:
        if not isinstance(d, SLADefinition):
            raise ValidationError(f"definitions must be SLADefinitions, got {type(d).__name__}")
    names = [d.name for d in defs]
    if len(set(names)) != len(names):
        raise ValidationError(f"give each SLA definition its own name, got {names}")
    listed = _records(records)
    key = _key(by, listed)
    kept: list[Any] = []
    groups: list[Hashable] = []
    for record in listed:
        if record.opened_at > at:
            continue
        kept.append(record)
        if key is None:
            groups.append(None)
        elif record.updated_at <= at:  # the record is as it was at ``at``
            groups.append(key(record))
        else:
            found = _as_of(record, at, history=_reads_history(key))
            groups.append(key(found.record) if found is not None else None)
    sums: dict[Hashable, list[int]] = {}
    completed = SLAStage.COMPLETED.value
    rows = evaluate_many(kept, defs, at=at) if kept and defs else []
    for i, row in enumerate(rows):
        if row["stage"] != completed or row["target"] is None:
            continue
        found_row = _bump(sums, (row["sla"], groups[i // len(defs)]), 2)
        found_row[0] += 1
        found_row[1] += not row["breached"]
    return _partial("sla_compliance", (_grouped(key), ("slas", tuple(names))), sums)


def _finish_compliance(partial: Partial) -> list[ComplianceRow]:
    per: dict[str, dict[Hashable, tuple[int, ...]]] = {}
    for sla, group, values in _pairs(partial):
        per.setdefault(sla, {})[group] = values
    rows = []
    for sla in _opt(partial, "slas"):
        found = per.get(sla, {})
        groups = _ordered(found) if _opt(partial, "grouped") else [None]
        for group in groups:
            count, met = found.get(group, (0, 0))
            rows.append(
                ComplianceRow(
                    sla=sla, group=group, count=count, met=met, rate=met / count if count else None
                )
            )
    return rows


@overload
def sla_compliance(
    records: Iterable[Any],
    definitions: Iterable[SLADefinition],
    *,
    at: datetime,
    by: By = None,
    frame: Literal[False] = False,
) -> list[ComplianceRow]: ...
@overload
def sla_compliance(
    records: Iterable[Any],
    definitions: Iterable[SLADefinition],
    *,
    at: datetime,
    by: By = None,
    frame: Literal[True],
) -> Any: ...
def sla_compliance(
    records: Iterable[Any],
    definitions: Iterable[SLADefinition],
    *,
    at: datetime,
    by: By = None,
    frame: bool = False,
) -> Any:
    """Share of the SLA clocks completed by ``at`` that were met, per definition and group.

    The clocks are ``evaluate_many``'s: a clock counts once it is completed (its stop
    condition held) and has a target; it is met when it was not breached. Running,
    paused, canceled and not-started clocks, and best-effort classes, are left out.
    ``by="priority"``, ``"assignment_group"``, ``"service"``, ``"month"`` (of opening) or a
    function group the rows, read from each record as it was at ``at``.
    """
    partial = sla_compliance_partial(records, definitions, at=at, by=by)
    return finish(partial, frame=frame)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- ageing


def _edges(buckets: Iterable[timedelta]) -> tuple[int, ...]:
    try:
        edges = tuple(buckets)
    except TypeError:
        raise ValidationError(
            f"buckets must be a collection of timedeltas, got {buckets!r}"
        ) from None
    if not all(isinstance(e, timedelta) for e in edges):
        raise ValidationError(f"buckets must be timedeltas, got {edges!r}")
    us = tuple(e // MICROSECOND for e in edges)
    if any(u <= 0 for u in us) or any(b <= a for a, b in pairwise(us)):
        raise ValidationError("bucket edges must be positive and increasing")
    return us


def ageing_partial(
    records: Iterable[Any],
    *,
    at: datetime,
    buckets: Iterable[timedelta] = DEFAULT_AGE_BUCKETS,
    by: By = None,
    calendar: BusinessCalendar | None = None,
) -> Partial:
    """The partial aggregate of :func:`ageing`: open records per (group, bucket)."""
    at = _at(at)
    edges = _edges(buckets)
    cal = _calendar(calendar)
    listed = _records(records)
    key = _key(by, listed)
    now = to_us(at)
    sums: dict[Hashable, list[int]] = {}
    for group, found in _walked(listed, at, key):
        if not found.active:
            continue
        opened = to_us(found.record.opened_at)
        age = now - opened if cal is None else cal.elapsed_us(opened, now)
        _bump(sums, (group, bisect_right(edges, age)), 1)[0] += 1
    options = (_grouped(key), ("edges", edges), ("business", cal is not None))
    return _partial("ageing", options, sums)


def _finish_ageing(partial: Partial) -> list[AgeingRow]:
    edges = _opt(partial, "edges")
    lows = (0, *edges)
    highs = (*edges, None)
    seen = {group for group, _, _ in _pairs(partial)}
    groups = _ordered(seen) if _opt(partial, "grouped") else [None]
    return [
        AgeingRow(
            group=group,
            low=timedelta(microseconds=low),
            high=None if high is None else timedelta(microseconds=high),
            count=partial.sums.get((group, i), (0,))[0],
        )
        for group in groups
        for i, (low, high) in enumerate(zip(lows, highs, strict=True))
    ]


@overload
def ageing(
    records: Iterable[Any],
    *,
    at: datetime,
    buckets: Iterable[timedelta] = DEFAULT_AGE_BUCKETS,
    by: By = None,
    calendar: BusinessCalendar | None = None,
    frame: Literal[False] = False,
) -> list[AgeingRow]: ...
@overload
def ageing(
    records: Iterable[Any],
    *,
    at: datetime,
    buckets: Iterable[timedelta] = DEFAULT_AGE_BUCKETS,
    by: By = None,
    calendar: BusinessCalendar | None = None,
    frame: Literal[True],
) -> Any: ...
def ageing(
    records: Iterable[Any],
    *,
    at: datetime,
    buckets: Iterable[timedelta] = DEFAULT_AGE_BUCKETS,
    by: By = None,
    calendar: BusinessCalendar | None = None,
    frame: bool = False,
) -> Any:
    """The records open at ``at`` (state tagged ``active``), bucketed by age.

    Age is ``at`` less the opening, in wall time, or in business time on ``calendar``.
    ``buckets`` are the edges (``[1 day, 3 days]`` makes ``[0, 1d)``, ``[1d, 3d)`` and
    ``[3d, ...)``); every bucket of every group gets a row, empty ones too.
    """
    partial = ageing_partial(records, at=at, buckets=buckets, by=by, calendar=calendar)
    return finish(partial, frame=frame)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- backlog


def series(
    start: datetime,
    end: datetime,
    *,
    every: Literal["day", "week"] | timedelta = "day",
    tz: str | tzinfo | None = None,
) -> list[datetime]:
    """The instants of a backlog series from ``start`` to ``end`` (both included).

    ``every="day"`` gives each local midnight, ``"week"`` each Monday's, in ``tz`` (the
    zone of ``start`` by default), from the first at or after ``start``; a ``timedelta``
    steps from ``start`` itself. Midnights are wall-clock ones, so a DST day is 23 or 25
    hours long.
    """
    start, end = require_aware(start, "start"), require_aware(end, "end")
    if isinstance(every, timedelta):
        if every <= timedelta(0):
            raise ValidationError(f"every must be a positive duration, got {every}")
        out = []
        t = start
        while t <= end:
            out.append(t)
            t += every
        return out
    if every not in ("day", "week"):
        raise ValidationError(f"every is 'day', 'week' or a timedelta, got {every!r}")
    place = zone(tz) if tz is not None else start.tzinfo
    local = start.astimezone(place)
    day = local.date()
    out = []
    while True:
        midnight = datetime(day.year, day.month, day.day, tzinfo=place)
        if to_us(midnight) >= to_us(start):
            if to_us(midnight) > to_us(end):
                return out
            if every == "day" or day.weekday() == 0:
                out.append(midnight)
        day += _DAY


def _spans(record: Record, key: Key | None, history: bool) -> list[tuple[int, int, Hashable]]:
    """``[start, end)`` spans (microseconds) in which ``record`` was open, with its group."""
    workflow = record.workflow
    active = workflow.tagged(ACTIVE)
    scratch, stream = record._steps(history=history)
    out: list[tuple[int, int, Hashable]] = []
    since: int | None = None
    group: Hashable = None
    for event in stream:
        now = to_us(event.at)
        is_open = scratch.state in active
        new = (None if key is None else key(scratch)) if is_open else None
        if since is not None and (not is_open or new != group):
            if now > since:
                out.append((since, now, group))
            since = None
        if is_open and since is None:
            since, group = now, new
    if since is not None:
        out.append((since, _FOREVER, group))
    return out


_FOREVER: Final = 2**62


def backlog_partial(
    records: Iterable[Any], *, instants: Iterable[datetime], by: By = None
) -> Partial:
    """The partial aggregate of :func:`backlog`: open records per (instant, group)."""
    points = sorted({to_us(require_aware(t, "instants")) for t in _listed(instants)})
    listed = _records(records)
    key = _key(by, listed)
    history = _reads_history(key)
    sums: dict[Hashable, list[int]] = {}
    if points:
        for record in listed:
            for a, b, group in _spans(record, key, history):
                # Every instant t of the series with a <= t < b sees the record open.
                for i in range(bisect_right(points, a - 1), bisect_right(points, b - 1)):
                    _bump(sums, (points[i], group), 1)[0] += 1
    return _partial("backlog", (_grouped(key), ("instants", tuple(points))), sums)


def _listed(values: Iterable[datetime]) -> list[datetime]:
    if isinstance(values, datetime):
        raise ValidationError("instants takes a collection of datetimes (see series())")
    try:
        return list(values)
    except TypeError:
        raise ValidationError(
            f"instants must be a collection of datetimes, got {values!r}"
        ) from None


def _finish_backlog(partial: Partial) -> list[BacklogRow]:
    points = _opt(partial, "instants")
    if not _opt(partial, "grouped"):
        return [
            BacklogRow(at=from_us(p), group=None, open=partial.sums.get((p, None), (0,))[0])
            for p in points
        ]
    per: dict[int, list[Hashable]] = {}
    for point, group, _ in _pairs(partial):
        per.setdefault(point, []).append(group)
    return [
        BacklogRow(at=from_us(p), group=g, open=partial.sums[(p, g)][0])
        for p in points
        for g in _ordered(per.get(p, ()))
    ]


@overload
def backlog(
    records: Iterable[Any],
    *,
    instants: Iterable[datetime],
    by: By = None,
    frame: Literal[False] = False,
) -> list[BacklogRow]: ...
@overload
def backlog(
    records: Iterable[Any], *, instants: Iterable[datetime], by: By = None, frame: Literal[True]
) -> Any: ...
def backlog(
    records: Iterable[Any], *, instants: Iterable[datetime], by: By = None, frame: bool = False
) -> Any:
    """How many records were open (in a state tagged ``active``) at each instant.

    Each instant is its own "as of": a record counts at ``t`` if it was opened by ``t``
    and its state at ``t`` (after every event at or before ``t``) is active, in the
    group it was in at ``t``. Without ``by`` every instant gets a row (0 when nothing
    was open); with ``by``, each group with something open. Instants are returned in UTC,
    in order, each once (:func:`series` makes daily or weekly ones).
    """
    return finish(backlog_partial(records, instants=instants, by=by), frame=frame)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- recurring groups


def top_recurring_partial(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = "ci",
    window: timedelta | None = timedelta(days=90),
    limit: int | None = 10,
) -> Partial:
    """The partial aggregate of :func:`top_recurring`: count, first and last opening per key."""
    at = _at(at)
    if by is None:
        raise ValidationError("top_recurring groups by something: name a field or a function")
    if window is not None and (not isinstance(window, timedelta) or window <= timedelta(0)):
        raise ValidationError(f"window must be a positive timedelta or None, got {window!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError(f"limit must be a positive whole number or None, got {limit!r}")
    listed = _records(incidents)
    key = _key(by, listed)
    since = None if window is None else at - window
    sums: dict[Hashable, list[int]] = {}
    for group, found in _walked(listed, at, key):
        opened = found.record.opened_at
        if found.canceled or group is None or (since is not None and opened <= since):
            continue
        t = to_us(opened)
        row = sums.get(group)
        if row is None:
            sums[group] = [1, t, t]
        else:
            row[0] += 1
            row[1] = min(row[1], t)
            row[2] = max(row[2], t)
    options = (("window", None if window is None else window // MICROSECOND), ("limit", limit))
    return _partial("top_recurring", options, sums)


def _finish_recurring(partial: Partial) -> list[RecurringRow]:
    limit = _opt(partial, "limit")
    order = {k: i for i, k in enumerate(_ordered(partial.sums))}
    ranked = sorted(partial.sums.items(), key=lambda kv: (-kv[1][0], order[kv[0]]))
    return [
        RecurringRow(key=k, count=n, first_seen=from_us(a), last_seen=from_us(b))
        for k, (n, a, b) in ranked[:limit]
    ]


@overload
def top_recurring(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = "ci",
    window: timedelta | None = timedelta(days=90),
    limit: int | None = 10,
    frame: Literal[False] = False,
) -> list[RecurringRow]: ...
@overload
def top_recurring(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = "ci",
    window: timedelta | None = timedelta(days=90),
    limit: int | None = 10,
    frame: Literal[True],
) -> Any: ...
def top_recurring(
    incidents: Iterable[Any],
    *,
    at: datetime,
    by: By = "ci",
    window: timedelta | None = timedelta(days=90),
    limit: int | None = 10,
    frame: bool = False,
) -> Any:
    """The keys (CI, category, service ...) most incidents were opened on within a window.

    Counts the incidents opened in ``(at - window, at]`` (all opened by ``at`` with
    ``window=None``) per key, read from each incident as it was at ``at``; incidents
    without a key and canceled ones are left out. The ``limit`` largest counts, ties in
    key order. A plain count: ``itsmcore.recurrence.detect_recurring`` ranks by how much
    a count exceeds chance, and finds periods; this is the table a report starts from.
    """
    partial = top_recurring_partial(incidents, at=at, by=by, window=window, limit=limit)
    return finish(partial, frame=frame)  # type: ignore[call-overload]


_SPECS: Final[dict[str, _Spec]] = {
    "mtta": _Spec(("count", "pending", "wall_us", "business_us"), (_add,) * 4,
                  _finish_durations, DurationRow),
    "mttr": _Spec(("count", "pending", "wall_us", "business_us"), (_add,) * 4,
                  _finish_durations, DurationRow),
    "first_contact_resolution": _Spec(("count", "hits"), (_add,) * 2, _finish_rates, RateRow),
    "reopen_rate": _Spec(("count", "hits"), (_add,) * 2, _finish_rates, RateRow),
    "change_success_rate": _Spec(("count", "hits"), (_add,) * 2, _finish_rates, RateRow),
    "emergency_change_ratio": _Spec(("count", "hits"), (_add,) * 2, _finish_rates, RateRow),
    "reassignment": _Spec(("records",), (_add,), _finish_reassignment, ReassignmentRow),
    "sla_compliance": _Spec(("count", "met"), (_add,) * 2, _finish_compliance, ComplianceRow),
    "ageing": _Spec(("records",), (_add,), _finish_ageing, AgeingRow),
    "backlog": _Spec(("records",), (_add,), _finish_backlog, BacklogRow),
    "top_recurring": _Spec(("count", "first_us", "last_us"), (_add, min, max),
                           _finish_recurring, RecurringRow),
}  # fmt: skip
