"""Change scheduling: conflicts with other changes and windows, and the next free slot.

``conflicts(change, others, ...)`` lists what is wrong with a change's planned window, by
kind (ServiceNow's list): another change holds one of its CIs at the same time, or a parent
or child CI (given ``related``); a CI is outside its maintenance window or inside a
blackout; the assignee is booked twice. ``all_conflicts(changes, ...)`` finds them across a
whole schedule by sorting and sweeping, never comparing every pair.
``next_free_slot(change, ...)`` proposes the earliest window of the change's length that
lies inside the maintenance windows of all its CIs, outside every blackout, and clashes with
no change on the same (or related) CIs or assignee.

Maintenance and blackout windows are :class:`~itsmcore.windows.Schedule` values: one for
every CI, or a mapping from CI to its schedule (the key ``"*"`` for the CIs not named).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

import attrs

from itsmcore._time import from_us, intersect_spans, merge_spans, subtract_spans, to_us, to_utc
from itsmcore.errors import ValidationError
from itsmcore.windows import Schedule

if TYPE_CHECKING:
    from itsmcore.change import Change

__all__ = ["Conflict", "ConflictKind", "all_conflicts", "conflicts", "next_free_slot"]

Windows = Schedule | Mapping[str, Schedule] | None
Related = Callable[[str], Iterable[str]] | None
_INACTIVE: Final = frozenset({"canceled"})


class ConflictKind(StrEnum):
    """What a planned window clashes with."""

    SAME_CI = "same_ci"
    RELATED_CI = "related_ci"
    OUTSIDE_MAINTENANCE = "outside_maintenance"
    IN_BLACKOUT = "in_blackout"
    ASSIGNEE_BUSY = "assignee_busy"


@attrs.frozen
class Conflict:
    """One clash of a change's planned window, and with what."""

    kind: ConflictKind
    change: str
    ci: str | None
    """The CI concerned (the change's own; for a related CI, the other change's)."""
    other: str | None = None
    """The other change, for clashes with one."""
    window: str | None = None
    """The maintenance or blackout window's name, for clashes with one."""
    start: datetime | None = None
    end: datetime | None = None
    """The span the clash covers (the overlap, or the part in a blackout)."""


def _planned(change: Any) -> tuple[datetime, datetime]:
    start, end = change.planned_start, change.planned_end
    if start is None or end is None:
        raise ValidationError(f"{change.id} has no planned window to check")
    return start, end


def _schedule_for(windows: Windows, ci: str | None) -> Schedule | None:
    if windows is None or isinstance(windows, Schedule):
        return windows
    if not isinstance(windows, Mapping):
        raise ValidationError("windows are a Schedule or a mapping of CI to Schedule")
    return windows.get(ci, windows.get("*")) if ci is not None else windows.get("*")


def _scopes(change: Any) -> tuple[str | None, ...]:
    return tuple(change.cis) or (None,)


def _window_conflicts(change: Any, maintenance: Windows, blackout: Windows) -> list[Conflict]:
    start, end = _planned(change)
    out = []
    for ci in _scopes(change):
        allowed = _schedule_for(maintenance, ci)
        if allowed is not None and not allowed.covers(start, end):
            out.append(Conflict(ConflictKind.OUTSIDE_MAINTENANCE, change.id, ci,
                                window=allowed.name, start=start, end=end))  # fmt: skip
        forbidden = _schedule_for(blackout, ci)
        if forbidden is not None:
            for a, b in forbidden.spans(start, end):
                out.append(Conflict(ConflictKind.IN_BLACKOUT, change.id, ci,
                                    window=forbidden.name, start=a, end=b))  # fmt: skip
    return out


def _pair_conflicts(change: Any, other: Any, related: Related) -> list[Conflict]:
    """Clashes of two changes whose planned windows overlap."""
    start = max(change.planned_start, other.planned_start)
    end = min(change.planned_end, other.planned_end)
    out = []
    theirs = set(other.cis)
    for ci in change.cis:
        if ci in theirs:
            out.append(Conflict(ConflictKind.SAME_CI, change.id, ci, other.id, None, start, end))
        if related is not None:
            out += [
                Conflict(ConflictKind.RELATED_CI, change.id, near, other.id, None, start, end)
                for near in related(ci)
                if near in theirs and near != ci
            ]
    if change.assignee is not None and change.assignee == other.assignee:
        out.append(Conflict(ConflictKind.ASSIGNEE_BUSY, change.id, None, other.id, None,
                            start, end))  # fmt: skip
    return out


def _active(changes: Iterable[Any], skip: str | None = None) -> list[Any]:
    return [
        c
        for c in changes
        if c.id != skip
        and str(c.state) not in _INACTIVE
        and c.planned_start is not None
        and c.planned_end is not None
    ]


def conflicts(
    change: Change,
    others: Iterable[Change] = (),
    *,
    maintenance: Windows = None,
    blackout: Windows = None,
    related: Related = None,
) -> list[Conflict]:
    """Everything the change's planned window clashes with (canceled changes aside).

    Args:
        change: a change with a planned window.
        others: the other changes on the schedule (the change itself is skipped).
        maintenance: when changes may happen, for every CI or per CI.
        blackout: when they must not.
        related: a CI's parents and children (from the service model), for clashes with
            changes on them.

    Raises:
        ValidationError: the change has no planned window.
    """
    start, end = _planned(change)
    out = _window_conflicts(change, maintenance, blackout)
    for other in _active(others, skip=change.id):
        if other.planned_start < end and start < other.planned_end:
            out += _pair_conflicts(change, other, related)
    return out


def all_conflicts(
    changes: Iterable[Change],
    *,
    maintenance: Windows = None,
    blackout: Windows = None,
    related: Related = None,
) -> list[Conflict]:
    """Every conflict of every change on a schedule, each clash of two changes once per side.

    Changes are swept in order of planned start; only changes still running when the next
    starts are compared, through an index by CI and assignee, so a year of 10,000 changes
    costs about as much as their overlaps, not their pairs.
    """
    ordered = sorted(_active(changes), key=lambda c: (c.planned_start, c.id))
    out: list[Conflict] = []
    running: list[Any] = []  # changes whose windows may still overlap what comes next
    for change in ordered:
        out += _window_conflicts(change, maintenance, blackout)
        start = change.planned_start
        running = [c for c in running if c.planned_end > start]
        by_key: dict[object, list[Any]] = defaultdict(list)
        for c in running:
            for key in (*(("ci", ci) for ci in c.cis), ("who", c.assignee)):
                by_key[key].append(c)
        keys = [("ci", ci) for ci in change.cis]
        if related is not None:
            keys += [("ci", near) for ci in change.cis for near in related(ci)]
        if change.assignee is not None:
            keys.append(("who", change.assignee))
        seen: set[str] = set()
        for key in keys:
            for other in by_key.get(key, ()):
                if other.id not in seen:
                    seen.add(other.id)
                    out += _pair_conflicts(change, other, related)
                    out += _pair_conflicts(other, change, related)
        running.append(change)
    return out


def next_free_slot(
    change: Change,
    *,
    after: datetime,
    maintenance: Windows,
    duration: timedelta | None = None,
    blackout: Windows = None,
    others: Iterable[Change] = (),
    related: Related = None,
    horizon: timedelta = timedelta(days=366),
) -> tuple[datetime, datetime] | None:
    """The earliest ``(start, end)`` from ``after`` where the change fits, or ``None``.

    The slot lies inside the maintenance windows of every CI of the change, outside every
    blackout, and overlaps no active change on the same (or a related) CI or with the same
    assignee; it is ``duration`` long (default: the change's planned length). Searched up
    to ``horizon`` after ``after``.
    """
    length = duration
    if length is None:
        start, end = _planned(change)
        length = end - start
    if not isinstance(length, timedelta) or length <= timedelta(0):
        raise ValidationError(f"a slot needs a positive duration, got {length!r}")
    lo = to_utc(after, "after")
    hi = lo + horizon
    free: list[tuple[int, int]] = [(to_us(lo), to_us(hi))]
    for ci in _scopes(change):
        allowed = _schedule_for(maintenance, ci)
        if allowed is not None:
            free = intersect_spans(free, _us(allowed.spans(lo, hi)))
        forbidden = _schedule_for(blackout, ci)
        if forbidden is not None:
            free = subtract_spans(free, _us(forbidden.spans(lo, hi)))
    mine = set(change.cis)
    if related is not None:
        mine |= {near for ci in change.cis for near in related(ci)}
    busy = merge_spans(
        sorted(
            (to_us(o.planned_start), to_us(o.planned_end))
            for o in _active(others, skip=change.id)
            if o.planned_end > lo
            and o.planned_start < hi
            and (
                mine & set(o.cis) or (change.assignee is not None and o.assignee == change.assignee)
            )
        )
    )
    need = length // timedelta(microseconds=1)
    for a, b in subtract_spans(free, busy):
        if b - a >= need:
            return from_us(a), from_us(a + need)
    return None


def _us(spans: list[tuple[datetime, datetime]]) -> list[tuple[int, int]]:
    return [(to_us(a), to_us(b)) for a, b in spans]
