"""Proactive problem management: find the incidents that keep coming back, and their cost.

``detect_recurring(incidents, by=...)`` groups incidents by a key (CI, service, category,
normalised short description, or a function), and returns the groups that recur more than
chance explains, ranked: each :class:`Candidate` says how often, since when, with what period
and phase (a weekly call-out on Tuesdays 18:00-21:00), whether it is rising, how much of it
falls outside business hours, and what it costs a year. ``candidate.to_problem(...)`` opens
the problem with its incidents linked.

The seed that asked for this (seed 001): a team was called out every week between 18:00 and
21:00 to restart the same application, at least an hour billed each time, 55-60 hours a
year, and nobody noticed because no report looked for recurring incidents.

Everything is one pass over the incidents plus a pass per group: linear in their number.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Final

import attrs

from itsmcore._time import zone
from itsmcore.errors import ValidationError
from itsmcore.problem import Problem, link_incidents

if TYPE_CHECKING:
    from itsmcore.calendar import BusinessCalendar

__all__ = ["Billing", "Candidate", "Phase", "detect_recurring", "normalise"]

_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_HOUR: Final = timedelta(hours=1)
_YEAR: Final = timedelta(days=365.25)
_NOISE: Final = re.compile(r"[\W\d_]+")  # all but letters, of any script


def normalise(text: str) -> str:
    """A short description with case, digits, ids and punctuation stripped.

    The same symptom then reads the same: ``"Restart APP-X #4711"`` and
    ``"restart app-x #12"`` are one. Letters of every script stay (``"Drucker läuft nicht"``).
    """
    return _NOISE.sub(" ", text.lower()).strip()


_KEYS: Final[dict[str, Callable[[Any], Hashable]]] = {
    "ci": lambda i: i.ci,
    "service": lambda i: i.service,
    "category": lambda i: i.category,
    "subcategory": lambda i: (i.category, i.subcategory) if i.subcategory else None,
    "assignment_group": lambda i: i.assignment_group,
    "title": lambda i: normalise(i.title) or None,
}


@attrs.frozen
class Billing:
    """How call-outs are billed: whole ``unit``s, at least ``minimum``, at ``rate`` an hour.

    An incident's billed time runs from its opening to its resolution (or closure); one not
    resolved yet bills the minimum.
    """

    minimum: timedelta = _HOUR
    unit: timedelta = _HOUR
    rate: float = 1.0

    def __attrs_post_init__(self) -> None:
        if not (isinstance(self.unit, timedelta) and isinstance(self.minimum, timedelta)):
            raise ValidationError("billing's minimum and unit are timedeltas")
        if not (self.unit > timedelta(0) and self.minimum >= timedelta(0)):
            raise ValidationError("billing needs a positive unit and a non-negative minimum")
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate >= 0:
            raise ValidationError(f"billing's rate must be a number from 0, got {rate!r}")
        if math.isinf(rate):
            raise ValidationError("billing's rate must be finite")

    def hours(self, incident: Any) -> float:
        """The hours billed for one incident."""
        end = getattr(incident, "resolved_at", None) or getattr(incident, "closed_at", None)
        worked = end - incident.opened_at if end is not None else timedelta(0)
        units = math.ceil(worked / self.unit) if worked > timedelta(0) else 0
        return max(self.minimum, self.unit * units) / _HOUR


@attrs.frozen
class Phase:
    """When in the week (or day) a periodic group happens, in a zone's local time."""

    weekday: int | None
    """0 for Monday ... 6 for Sunday; ``None`` for a daily pattern."""
    start_hour: int
    end_hour: int

    def __str__(self) -> str:
        band = f"{self.start_hour:02d}:00-{self.end_hour % 24:02d}:00"
        return band if self.weekday is None else f"{_DAYS[self.weekday]} {band}"


@attrs.frozen
class Candidate:
    """A group of incidents that recur: how often, when, how regularly, at what cost."""

    key: Hashable
    count: int
    first_seen: datetime
    last_seen: datetime
    score: float
    """How far beyond chance the count is: ``-log10`` of the number of groups that would
    reach this count if incidents fell on groups at random (3: one in a thousand sets of
    groups would show one this large; 0 or less: nothing unusual)."""
    period: timedelta | None
    """7 days or 1 day when most occurrences fall in one weekly (or daily) slot."""
    phase: Phase | None
    periodic_share: float
    """The share of the days with an occurrence whose first one falls in the phase's slot."""
    monthly: tuple[tuple[str, int], ...]
    """Occurrences per month (``YYYY-MM``), every month from the first to the last."""
    trend: float
    """The least-squares slope of the monthly counts, in occurrences per month per month,
    over the whole months between the first and the last (the partial first and last are
    left out; 0 with fewer than two)."""
    outside_hours: float | None
    """The share opened outside the calendar's business hours (``None`` without one)."""
    per_year: float
    billed_hours_per_year: float
    cost_per_year: float
    incidents: tuple[Any, ...] = attrs.field(repr=False)

    def to_problem(
        self,
        *,
        id: str,  # noqa: A002 - the record's id, named as users name it
        at: datetime,
        by: str,
        impact: Any = 2,
        urgency: Any = 2,
        title: str | None = None,
    ) -> tuple[Problem, list[Any]]:
        """Open the problem this candidate points at, its incidents linked, in one call.

        The problem's symptom is the incidents' most common short description; its CI and
        service are theirs when they all share one. The description says how many, since
        when, the pattern and the billed hours a year.

        Returns the problem and the incidents as they are after linking (save both).
        """
        what = title or f"Recurring incidents: {self.key}"
        every = self.period.days if self.period is not None else 0
        pattern = f", {self.phase} every {every} day(s)" if self.phase else ""
        problem = Problem.open(
            id=id,
            title=what,
            description=(
                f"{self.count} incidents from {self.first_seen:%Y-%m-%d} to "
                f"{self.last_seen:%Y-%m-%d}{pattern}; about {self.billed_hours_per_year:.0f} "
                f"billed hours a year"
            ),
            symptom=Counter(i.title for i in self.incidents).most_common(1)[0][0],
            ci=_shared(self.incidents, "ci"),
            service=_shared(self.incidents, "service"),
            impact=impact,
            urgency=urgency,
            at=at,
            by=by,
        )
        return link_incidents(problem, self.incidents, at=at, by=by)


def _shared(incidents: Iterable[Any], field: str) -> str | None:
    values = {getattr(i, field, None) for i in incidents}
    only = values.pop() if len(values) == 1 else None
    return only if isinstance(only, str) else None


def detect_recurring(
    incidents: Iterable[Any],
    *,
    by: str | Callable[[Any], Hashable] = "ci",
    window: timedelta | None = None,
    min_count: int = 3,
    min_score: float = 3.0,
    min_pattern_score: float = 3.0,
    calendar: BusinessCalendar | None = None,
    tz: str | tzinfo | None = None,
    band_hours: int = 3,
    billing: Billing | None = None,
    cost: Callable[[Any], float] | None = None,
) -> list[Candidate]:
    """The groups of incidents that recur beyond chance, most striking first.

    Args:
        incidents: incident records (anything with ``opened_at`` and the key's field).
        by: ``"ci"``, ``"service"``, ``"category"``, ``"subcategory"``,
            ``"assignment_group"``, ``"title"`` (the normalised short description), or a
            function of an incident returning its group (``None``: no group).
        window: only incidents opened within this long before the latest one.
        min_count: the fewest incidents a group needs.
        min_score: the :attr:`Candidate.score` a group needs to be reported for its count
            alone (3: random incidents produce such a group once in a thousand sets); a
            group with a weekly or daily pattern is reported whatever its count.
        min_pattern_score: how far beyond chance a weekly or daily slot must be filled to
            be a pattern, on the same scale (3: random incidents show one once in a
            thousand sets of groups).
        calendar: business hours, for the share outside them (and the zone of the phase).
        tz: the zone the phase is read in (default: the calendar's, else UTC).
        band_hours: the width of the hour band a phase is looked for in.
        billing: how call-outs are billed (at least an hour, whole hours, rate 1).
        cost: instead of ``billing``, the cost of one incident.

    Returns:
        The candidates: those with a weekly or daily pattern first, then by score.

    Raises:
        ValidationError: an unknown ``by``, or a knob out of its range.
    """
    _whole("min_count", min_count, 2, None)
    _whole("band_hours", band_hours, 1, 24)
    if window is not None and not (isinstance(window, timedelta) and window > timedelta(0)):
        raise ValidationError(f"window must be a positive timedelta, got {window!r}")
    local = zone(tz) if tz is not None else (calendar.tz if calendar is not None else UTC)
    billing = billing or Billing()
    groups = _groups(incidents, _key_function(by), window)
    if not groups:
        return []
    mean = sum(map(len, groups.values())) / len(groups)
    weeks, local_times = {}, {}
    for key, members in groups.items():
        local_times[key] = times = [i.opened_at.astimezone(local) for i in members]
        weeks[key] = _hours_of_week(times)
    everyone = [sum(hour) for hour in zip(*weeks.values(), strict=True)]
    found = []
    for key, members in groups.items():
        if len(members) < min_count:
            continue
        score = _surprise(len(members), mean, len(groups))
        week = weeks[key]
        others = [a - b for a, b in zip(everyone, week, strict=True)]
        pattern = _pattern(
            local_times[key], week, others=others, band=band_hours, trials=len(groups),
            min_score=min_pattern_score,
        )  # fmt: skip
        if score < min_score and pattern is None:
            continue
        found.append(
            _candidate(
                key,
                sorted(members, key=_opened_at),
                local,
                score=score,
                pattern=pattern,
                calendar=calendar,
                billing=billing,
                cost=cost,
            )
        )
    found.sort(key=lambda c: (c.period is None, -c.score, -c.count))
    return found


def _surprise(count: int, mean: float, groups: int) -> float:
    """``-log10(groups * P(X >= count))`` for X Poisson with the groups' mean."""
    if count <= mean:
        return 0.0
    # The tail sum from its first term: each next term is the last times mean / (k + 1).
    term = total = 1.0
    k = count
    while term > 1e-17 * total:
        k += 1
        term *= mean / k
        total += term
    log_first = count * math.log(mean) - mean - math.lgamma(count + 1)
    return -(math.log10(groups) + (log_first + math.log(total)) / math.log(10))


def _whole(name: str, value: object, low: int, high: int | None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        upto = f" to {high}" if high is not None else " or more"
        raise ValidationError(f"{name} must be a whole number {low}{upto}, got {value!r}")


def _groups(
    incidents: Iterable[Any], key_of: Callable[[Any], Hashable], window: timedelta | None
) -> dict[Hashable, list[Any]]:
    """The incidents by their key (those with none left out), within the window."""
    groups: dict[Hashable, list[Any]] = defaultdict(list)
    latest: datetime | None = None
    for incident in incidents:
        key = key_of(incident)
        if key is None:
            continue
        opened = incident.opened_at
        if not isinstance(opened, datetime) or opened.utcoffset() is None:
            raise ValidationError(f"opened_at must be an aware datetime, got {opened!r}")
        try:
            groups[key].append(incident)
        except TypeError as exc:
            raise ValidationError(f"a group key must be hashable, got {key!r}") from exc
        latest = opened if latest is None or opened > latest else latest
    if window is None or latest is None:
        return groups
    cutoff = latest - window
    kept = {k: [i for i in g if i.opened_at >= cutoff] for k, g in groups.items()}
    return {k: g for k, g in kept.items() if g}


def _key_function(by: str | Callable[[Any], Hashable]) -> Callable[[Any], Hashable]:
    if callable(by):
        return by
    found = _KEYS.get(by) if isinstance(by, str) else None
    if found is None:
        raise ValidationError(f"group by one of {', '.join(_KEYS)}, or a function; got {by!r}")
    return found


def _opened_at(incident: Any) -> datetime:
    opened: datetime = incident.opened_at
    return opened


def _hours_of_week(times: Iterable[datetime]) -> list[int]:
    """The hours with an occurrence, counted by their hour of the week.

    Each hour of each day counts once: an outage logged as ten incidents in an hour is one.
    """
    week = [0] * 168
    for _, weekday, hour in {(t.date(), t.weekday(), t.hour) for t in times}:
        week[weekday * 24 + hour] += 1
    return week


def _pattern(
    times: list[datetime],
    week: list[int],
    *,
    others: list[int],
    band: int,
    trials: int,
    min_score: float,
) -> tuple[timedelta, Phase, float] | None:
    """The weekly or daily slot most of a group's occurrences fall in, if they do.

    ``week`` counts the hours with one of the group's occurrences by hour of the week,
    ``others`` every other group's. Chance fills a slot of ``band`` hours (it may run past
    midnight) in the share the other groups do, smoothed by one per hour of the week: so
    office-hours traffic is no pattern, and a group alone is measured against an even
    spread. A slot is a pattern when it holds at least 3 and more than half of the hours,
    on separate days (or weeks) for the most part, and chance fills a slot that full in
    fewer than ``10 ** -min_score`` of all the groups' slots (the binomial tail, times the
    slots and groups one could have picked).
    """
    n = sum(week)
    prior = sum(others) + 168
    by_hour = [sum(week[h::24]) for h in range(24)]
    others_by_hour = [sum(others[h::24]) for h in range(24)]
    for counts, base, period in (
        (week, others, timedelta(days=7)),
        (by_hour, others_by_hour, timedelta(days=1)),
    ):
        slots = len(counts)
        in_slot = _band_sums(counts, band)
        best: tuple[float, int, bool, int] | None = None
        for start, count in enumerate(in_slot):
            if count < 3 or count <= n / 2:
                continue  # at most 2 * band - 1 slots get past this
            expected = sum(base[(start + k) % slots] for k in range(band))
            chance = (expected + band * 168 / slots) / prior
            tail = _log10_binomial_tail(count, n, chance) + math.log10(trials * slots)
            # The most surprising slot; of equals, one that opens with an occurrence.
            rank = (tail, -count, counts[start] == 0)
            if tail <= -min_score and (best is None or rank < best[:3]):
                best = (*rank, start)
        if best is not None and _occasions(times, best[3], band, slots) < -best[1] * 0.8:
            best = None  # several hours a day in the slot: steady load, not a rhythm
        if best is not None:
            start, count = best[3], -best[1]
            weekday = start // 24 if slots == 168 else None
            return period, Phase(weekday, start % 24, start % 24 + band), count / n
    return None


def _band_sums(counts: list[int], band: int) -> list[int]:
    """For each start, the sum of ``band`` counts from it (wrapping round): a sliding sum."""
    slots = len(counts)
    total = sum(counts[k % slots] for k in range(band))
    out = []
    for start in range(slots):
        out.append(total)
        total += counts[(start + band) % slots] - counts[start]
    return out


def _occasions(times: list[datetime], start: int, band: int, slots: int) -> int:
    """The separate days (or weeks) the occurrences inside a slot fall on."""
    offset = timedelta(hours=start % 24)
    seen = set()
    for t in times:
        at = t.weekday() * 24 + t.hour if slots == 168 else t.hour
        if (at - start) % slots < band:
            seen.add((t - offset).date())
    return len(seen)


def _log10_binomial_tail(count: int, n: int, chance: float) -> float:
    """``log10 P(X >= count)`` for X binomial over ``n`` tries at ``chance``."""
    if chance >= 1.0:
        return 0.0
    odds = chance / (1 - chance)
    term = total = 1.0
    for k in range(count, n):
        term *= (n - k) / (k + 1) * odds
        total += term
        if term < 1e-17 * total:
            break
    log_first = (
        math.lgamma(n + 1) - math.lgamma(count + 1) - math.lgamma(n - count + 1)
        + count * math.log(chance) + (n - count) * math.log1p(-chance)
    )  # fmt: skip
    return min(0.0, (log_first + math.log(total)) / math.log(10))


def _candidate(
    key: Hashable,
    members: list[Any],
    local: tzinfo,
    *,
    score: float,
    pattern: tuple[timedelta, Phase, float] | None,
    calendar: BusinessCalendar | None,
    billing: Billing,
    cost: Callable[[Any], float] | None,
) -> Candidate:
    first, last = members[0].opened_at, members[-1].opened_at
    times = [i.opened_at.astimezone(local) for i in members]
    months = Counter(f"{t.year:04d}-{t.month:02d}" for t in times)
    monthly = tuple((m, months.get(m, 0)) for m in _month_range(times[0], times[-1]))
    outside = (
        None
        if calendar is None
        else sum(not calendar.is_open(i.opened_at) for i in members) / len(members)
    )
    # A year of occurrences: the span they cover, plus one mean gap for the last of them.
    span = (last - first) / max(len(members) - 1, 1) * len(members)
    per_year = len(members) * (_YEAR / span) if span > timedelta(0) else float(len(members))
    hours = sum(billing.hours(i) for i in members)
    money = sum(map(cost, members)) if cost is not None else hours * billing.rate
    scale = per_year / len(members)
    period, phase, share = pattern if pattern is not None else (None, None, 0.0)
    return Candidate(
        key=key,
        count=len(members),
        first_seen=first,
        last_seen=last,
        score=round(score, 2),
        period=period,
        phase=phase,
        periodic_share=round(share, 3),
        monthly=monthly,
        trend=round(_slope([c for _, c in monthly[1:-1]]), 3),
        outside_hours=None if outside is None else round(outside, 3),
        per_year=round(per_year, 1),
        billed_hours_per_year=round(hours * scale, 1),
        cost_per_year=round(money * scale, 2),
        incidents=tuple(members),
    )


def _month_range(first: datetime, last: datetime) -> list[str]:
    out = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _slope(values: list[int]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    top = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    bottom = sum((x - mean_x) ** 2 for x in range(n))
    return top / bottom
