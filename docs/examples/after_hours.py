"""Seed 001: the weekly after-hours restart nobody noticed, found, costed and made a problem.

A year of a desk's incidents (3,000 random ones over 200 CIs) hides one pattern: every
Tuesday evening the billing application hangs and the on-call engineer restarts it, billed
at least an hour at 95 an hour; in the last six weeks it hangs on Friday evenings too.
Run it: ``python docs/examples/after_hours.py``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from itsmcore import BusinessCalendar, Incident
from itsmcore.problem import communicate_workaround, find_known_errors
from itsmcore.recurrence import Billing, detect_recurring

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessCalendar.weekly({"mon-fri": "08:00-17:00"}, tz="Europe/Berlin")
CALL_OUT = Billing(minimum=timedelta(hours=1), unit=timedelta(minutes=30), rate=95.0)


def a_year_of_incidents() -> list[Incident]:
    rnd = random.Random(2025)  # noqa: S311 - a reproducible sample, not a secret
    start = datetime(2025, 1, 6, tzinfo=UTC)
    out = []
    for k in range(3_000):
        at = start + timedelta(seconds=rnd.randrange(365 * 86_400))
        ci = f"CI{rnd.randrange(200):03d}"
        inc = Incident.open(id=f"INC{k:07d}", title="user issue", caller="user", impact=3,
                            urgency=3, at=at, by="desk", ci=ci)  # fmt: skip
        done = at + timedelta(minutes=rnd.randrange(10, 480))
        out.append(inc.resolve(code="solution_provided", notes="fixed", at=done, by="desk"))
    tuesdays = [7 * week for week in range(52)]
    fridays = [7 * week + 3 for week in range(46, 52)]
    for n, day in enumerate(sorted(tuesdays + fridays)):  # 18:00-20:30 Berlin time
        at = datetime(2025, 1, 7, 18, tzinfo=BERLIN) + timedelta(
            days=day, minutes=rnd.randrange(150)
        )
        inc = Incident.open(id=f"INC9{n:06d}", title="Billing app hangs", caller="monitor",
                            impact=2, urgency=2, at=at, by="oncall", ci="app-billing")  # fmt: skip
        if day < 7 * 51 + 3:  # the last one is still open
            done = at + timedelta(minutes=rnd.randrange(20, 50))
            inc = inc.resolve(code="workaround_provided", notes="restarted", at=done, by="oncall")
        out.append(inc)
    return out


def main() -> None:
    incidents = a_year_of_incidents()
    top = detect_recurring(incidents, by="ci", calendar=OFFICE, billing=CALL_OUT)[0]
    seen = f"{top.first_seen:%Y-%m-%d} to {top.last_seen:%Y-%m-%d}"
    print(f"{top.key}: {top.count} incidents, {seen}")
    print(f"pattern: {top.phase} every {top.period.days} days ({top.periodic_share:.0%} of them)")
    print(f"outside business hours: {top.outside_hours:.0%}; trend {top.trend:+.2f} a month")
    print(f"the last months: {', '.join(f'{m} {n}' for m, n in top.monthly[-4:])}")
    print(f"a year: {top.per_year:.0f} call-outs, {top.billed_hours_per_year:.0f} billed hours,")
    print(f"        costing {top.cost_per_year:,.2f}")

    now = datetime(2026, 1, 5, 9, tzinfo=UTC)
    problem, linked = top.to_problem(id="PRB0000001", at=now, by="analyst", impact=2, urgency=2)
    problem = problem.assess(at=now, by="coordinator").confirm(at=now, by="coordinator")
    problem = problem.analyze(
        technique="five_whys",
        findings="Hangs at the Tuesday 18:00 batch export; heap exhausted each time",
        root_cause="The weekly export loads every invoice into memory at once",
        root_cause_ci="app-billing",
        contributing_factors=["invoice volume doubled in 2024"],
        at=now, by="analyst",
    )  # fmt: skip
    problem = problem.record_workaround(
        workaround="Restart billing-app after the export; raising the heap to 8 GB helps",
        at=now, by="analyst",
    )  # fmt: skip
    noted = communicate_workaround(problem, linked, at=now, by="analyst")
    told = sum(n is not o for n, o in zip(noted, linked, strict=True))
    print(f"{problem.id} [{problem.state}] {problem.title}; priority {problem.priority}")
    print(f"  known error: {problem.known_error}; root cause: {problem.root_cause}")
    print(f"  linked incidents: {len(problem.incidents)}; workaround posted to {told} open one")
    (entry,) = find_known_errors([problem], symptom="billing app hangs")
    print(f"  the desk finds it by its symptom: {entry.problem}: {entry.workaround}")


if __name__ == "__main__":
    main()
