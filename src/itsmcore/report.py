"""A service desk report as one self-contained HTML file: figures, charts, recurring work.

``html_report(incidents, at=..., calendar=..., clocks=...)`` reads the KPIs of
:mod:`itsmcore.analytics` and the recurring-incident candidates of
:mod:`itsmcore.recurrence` and lays them out with inline SVG charts: SLA compliance by
priority and month, the backlog day by day, how long resolutions took, and the groups of
incidents that recur with what they cost a year. No script, no stylesheet or font fetched:
it opens offline, in any browser, and prints. ``itsmcore report`` writes it from a store.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING, Any

from itsmcore import _svg, analytics
from itsmcore.errors import ValidationError
from itsmcore.priority import Priority
from itsmcore.recurrence import Billing, detect_recurring

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from itsmcore.calendar import BusinessCalendar
    from itsmcore.incident import Incident
    from itsmcore.sla import SLADefinition

__all__ = ["html_report"]

_STYLE = """
body{font-family:sans-serif;margin:2rem auto;max-width:60rem;color:#222;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:0}h2{font-size:1.2rem;margin-top:2.2rem}
.sub{color:#666;margin-top:.2rem}.chart{width:100%;height:auto}
.figures{display:flex;flex-wrap:wrap;gap:1rem}.figure{border:1px solid #ddd;border-radius:6px;
padding:.6rem 1rem;min-width:9rem}.figure b{display:block;font-size:1.4rem}
table{border-collapse:collapse;margin-top:.6rem}td,th{border-bottom:1px solid #eee;
padding:.25rem .7rem;text-align:right}td:first-child,th:first-child{text-align:left}
"""
_HOUR = timedelta(hours=1)


def html_report(
    incidents: Iterable[Incident],
    *,
    at: datetime,
    calendar: BusinessCalendar,
    clocks: Sequence[SLADefinition],
    billing: Billing | None = None,
    title: str = "Service desk report",
) -> str:
    """The report as HTML text: write it to a ``.html`` file.

    Args:
        incidents: the incidents to report on (as of ``at``).
        at: the instant the report is as of (aware).
        calendar: business hours for business-time figures.
        clocks: SLA definitions whose compliance is shown (the first per chart).
        billing: how recurring call-outs are priced (default: at least an hour, in whole
            hours, at 1.0 an hour: the cost column is then billed hours).
        title: the page's heading.

    >>> from itsmcore.sample import OFFICE, sample_month
    >>> from itsmcore.sla import SLADefinition
    >>> month = sample_month(incidents=60)
    >>> clock = SLADefinition.incident_resolution({p: 8 * _HOUR for p in Priority}, OFFICE)
    >>> page = html_report(month.incidents, at=month.end, calendar=OFFICE, clocks=[clock])
    >>> page.startswith("<!DOCTYPE html>"), page.count("<svg")
    (True, 3)
    """
    records = list(incidents)
    if not records:
        raise ValidationError("a report needs at least one incident")
    if not clocks:
        raise ValidationError("a report needs at least one SLA definition (clocks)")
    tz = at.tzinfo or UTC
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        (
            f'<p class="sub">{len(records):,} incidents, opened '
            f"{min(r.opened_at for r in records).astimezone(tz):%d %b %Y} to "
            f"{max(r.opened_at for r in records).astimezone(tz):%d %b %Y}; as of "
            f"{at.astimezone(tz):%d %b %Y %H:%M %Z}</p>"
        ),
        _figures(records, at, calendar),
        _compliance(records, at, clocks[0]),
        _backlog(records, at),
        _resolution_times(records, at, calendar),
        _recurring(records, calendar, billing or Billing()),
        "</body></html>",
    ]
    return "\n".join(parts)


def _figures(records: list[Incident], at: datetime, calendar: BusinessCalendar) -> str:
    (mtta,) = analytics.mtta(records, at=at, calendar=calendar)
    (mttr,) = analytics.mttr(records, at=at, calendar=calendar)
    (fcr,) = analytics.first_contact_resolution(records, at=at)
    (reopen,) = analytics.reopen_rate(records, at=at)
    states = Counter(str(r.state) for r in records if r.opened_at <= at)
    open_now = sum(n for s, n in states.items() if s not in {"resolved", "closed", "canceled"})
    cells = [
        ("open now", f"{open_now:,}"),
        ("mean time to acknowledge", _hours(mtta.business_mean, "business")),
        ("mean time to resolve", _hours(mttr.business_mean, "business")),
        ("first-contact resolution", _share(fcr.rate)),
        ("reopened", _share(reopen.rate)),
    ]
    boxes = "".join(f'<div class="figure"><b>{v}</b>{escape(k)}</div>' for k, v in cells)
    return f'<h2>Key figures</h2><div class="figures">{boxes}</div>'


def _hours(span: timedelta | None, what: str) -> str:
    if span is None:
        return "-"
    return f"{span / _HOUR:.1f} h <small>{what}</small>"


def _share(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f} %"


def _compliance(records: list[Incident], at: datetime, clock: SLADefinition) -> str:
    tz = at.tzinfo or UTC

    def priority_and_month(record: Any) -> tuple[str, str]:
        return (record.priority.name, f"{record.opened_at.astimezone(tz):%Y-%m}")

    rows = analytics.sla_compliance(records, [clock], at=at, by=priority_and_month)
    groups: list[tuple[str, str]] = [row.group for row in rows]  # type: ignore[misc]
    months = sorted({month for _, month in groups})
    priorities = [p.name for p in Priority if any(name == p.name for name, _ in groups)]
    cells = {row.group: row for row in rows}
    none = analytics.ComplianceRow(sla=clock.name, group=None, count=0, met=0, rate=None)
    grid = {p: [cells.get((p, m), none) for m in months] for p in priorities}
    series: dict[str, Sequence[float | None]] = {
        p: [None if row.rate is None else 100 * row.rate for row in grid[p]] for p in priorities
    }
    chart = _svg.bars(
        f"{clock.name}: share met by priority and month", months, series, unit=" %", top=100
    )
    table = _table(
        ["priority", *months],
        [
            [p] + [f"{row.met}/{row.count}" if row.count else "-" for row in grid[p]]
            for p in priorities
        ],
    )
    return (
        f"<h2>SLA compliance by priority and month</h2><p>{escape(clock.name)}: clocks "
        f"completed by the report's date, met / completed.</p>{chart}{table}"
    )


def _backlog(records: list[Incident], at: datetime) -> str:
    first = min(r.opened_at for r in records)
    tz = at.tzinfo or UTC
    day = first.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = analytics.backlog(records, instants=analytics.series(day, at, tz=tz))
    points = [(f"{row.at.astimezone(tz):%d %b}", float(row.open)) for row in rows]
    chart = _svg.line("open incidents at the start of each day", points)
    return f"<h2>Backlog</h2><p>Open incidents at the start of each day.</p>{chart}"


def _resolution_times(records: list[Incident], at: datetime, calendar: BusinessCalendar) -> str:
    hours = [
        calendar.elapsed(r.opened_at, r.resolved_at) / _HOUR
        for r in records
        if r.resolved_at is not None and r.resolved_at <= at
    ]
    edges = [0, 1, 2, 4, 8, 16, 24, 40, 80]
    chart = _svg.histogram("incidents by business hours to resolve", hours, edges=edges, unit=" h")
    ordered = sorted(hours)
    median = f"{ordered[len(ordered) // 2]:.1f} h" if ordered else "-"
    return (
        f"<h2>Time to resolve</h2><p>Business hours from opening to the last resolution, "
        f"{len(hours):,} resolved incidents; median {median}.</p>{chart}"
    )


def _recurring(records: list[Incident], calendar: BusinessCalendar, billing: Billing) -> str:
    found = []
    for by in ("ci", "service", "category"):
        found += [(by, c) for c in detect_recurring(records, by=by, calendar=calendar,
                                                    billing=billing)[:5]]  # fmt: skip
    found.sort(key=lambda pair: -pair[1].score)  # the most striking first, as detected
    rows = [
        [
            f"{by} {c.key}",
            f"{c.count:,}",
            f"{c.per_year:,.0f}",
            str(c.phase) if c.phase else "-",
            "-" if c.outside_hours is None else f"{100 * c.outside_hours:.0f} %",
            f"{c.billed_hours_per_year:,.0f}",
            f"{c.cost_per_year:,.2f}",
        ]
        for by, c in found[:10]
    ]
    header = ["group", "incidents", "a year", "pattern", "outside hours", "billed h a year",
              "cost a year"]  # fmt: skip
    table = _table(header, rows) if rows else "<p>No group recurs beyond chance.</p>"
    return (
        "<h2>Recurring-incident candidates</h2><p>Groups of incidents that recur beyond "
        "chance (by configuration item, service and category; the most striking first), "
        "with what their call-outs cost a year (each billed from opening to resolution): "
        f"candidates for problem management.</p>{table}"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
