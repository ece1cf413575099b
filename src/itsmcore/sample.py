"""A realistic month of a service desk, generated: incidents, problems and changes.

For the command line's ``itsmcore demo``, for reports tried without data of one's own, and
for tests that want many records with lives like real ones. Seeded: the same seed gives
the same month. Every record is built with the practices' own verbs, so every rule of
their lifecycles holds.

>>> month = sample_month(seed=7, incidents=40)
>>> len(month.incidents), len(month.problems) > 0, len(month.changes) > 0
(40, True, True)
>>> month == sample_month(seed=7, incidents=40)
True
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import attrs

from itsmcore.calendar import BusinessCalendar
from itsmcore.change import ApprovalLevel, Change, ChangeType, StandardChangeTemplate
from itsmcore.incident import Incident
from itsmcore.problem import Problem

__all__ = ["OFFICE", "Sample", "sample_month"]

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessCalendar.weekly({"mon-fri": "08:00-18:00"}, tz="Europe/Berlin")
"""The sample desk's hours: weekdays 08:00-18:00 in Berlin."""

# (service, configuration items, category, group, titles)
_SERVICES = (
    ("email", ("mx-01", "mx-02"), "software", "messaging",
     ("Mail not arriving", "Outlook keeps asking for a password", "Mailbox full")),
    ("vpn", ("vpn-gw-1",), "network", "network",
     ("VPN cannot connect", "VPN drops every hour", "Slow VPN from home")),
    ("payroll", ("pay-app", "pay-db"), "software", "erp",
     ("Payroll export fails", "Payslips show last month", "Cannot open payroll")),
    ("workplace", ("print-3f", "laptop-pool"), "hardware", "desktop",
     ("Printer jam on 3rd floor", "Laptop will not boot", "Docking station dead")),
    ("web shop", ("web-01", "web-02", "shop-db"), "software", "web",
     ("Checkout returns 500", "Shop is slow", "Product images missing")),
)  # fmt: skip
_CALLERS = tuple(f"user{k:03d}" for k in range(60))
_AGENTS = ("sam", "lee", "ana", "joe", "kim", "raj")
_CHANNELS = ("phone", "email", "portal", "chat", "walk_in")
_CODES = ("solution_provided", "workaround_provided", "resolved_by_caller", "user_error")
_RESTART = StandardChangeTemplate(
    "restart-web", 3, "Restart the web tier", implementation_plan="rolling restart",
    backout_plan="none needed", duration=timedelta(minutes=30),
)  # fmt: skip
_APPROVALS = {
    ChangeType.NORMAL: (
        ApprovalLevel.any_of("technical", ["tina"], stage="assess"),
        ApprovalLevel.any_of("cab", ["ann"]),
    ),
    ChangeType.EMERGENCY: (ApprovalLevel.any_of("ecab", ["ed"]),),
}


@attrs.frozen
class Sample:
    """A generated month: the records, and when it ends (the instant to read them at)."""

    incidents: tuple[Incident, ...]
    problems: tuple[Problem, ...]
    changes: tuple[Change, ...]
    start: datetime
    end: datetime


def sample_month(*, seed: int = 0, incidents: int = 300, start: datetime | None = None) -> Sample:
    """Thirty days of a desk: incidents, the problems behind them, the month's changes.

    ``incidents`` incidents; a problem for each configuration item with five incidents or
    more; changes standard, normal and emergency, a few of them failing. Arrivals follow
    office hours; priorities are mostly P3-P4; resolution times are long tailed; some
    incidents wait for the caller, get reassigned or escalated, are reopened, or are still
    open when the month ends.
    """
    rng = random.Random(seed)  # noqa: S311 - a sample, reproducible by its seed, not a secret
    first = start or datetime(2025, 3, 3, tzinfo=BERLIN)
    end = first + timedelta(days=30)
    built = [_incident(rng, k, first, end) for k in range(incidents)]
    problems, linked = _problems(rng, built, end)
    changes = tuple(_change(rng, k, first, end) for k in range(max(3, incidents // 15)))
    return Sample(tuple(linked), problems, changes, first, end)


def _whole(*, minutes: float = 0, hours: float = 0) -> timedelta:
    """A span to the second, as people and tools record them."""
    return timedelta(seconds=round(minutes * 60 + hours * 3600))


def _arrival(rng: random.Random, first: datetime, end: datetime) -> datetime:
    """An instant in office hours, mostly; a few at night and at weekends."""
    while True:
        day = first + timedelta(days=rng.randrange((end - first).days - 1))
        at = day.replace(hour=rng.choice(range(7, 19)), minute=rng.randrange(60))
        if (OFFICE.is_open(at) or rng.random() < 0.08) and at < end - timedelta(days=1):
            return at


def _incident(rng: random.Random, k: int, first: datetime, end: datetime) -> Incident:
    service, cis, category, group, titles = rng.choice(_SERVICES)
    at = _arrival(rng, first, end)
    impact, urgency = rng.choices([(1, 1), (1, 2), (2, 2), (2, 3), (3, 3)], [2, 6, 30, 40, 22])[0]
    record = Incident.open(
        id=f"INC{k + 1:05d}", title=rng.choice(titles), caller=rng.choice(_CALLERS),
        impact=impact, urgency=urgency, at=at, by="desk", channel=rng.choice(_CHANNELS),
        service=service, ci=rng.choice(cis), category=category,
        # Routed as it is logged, mostly; the rest wait for the desk to triage them.
        assignment_group="service-desk" if rng.random() < 0.15 else group,
    )  # fmt: skip
    agent = rng.choice(_AGENTS)
    t = OFFICE.add(at, _whole(minutes=rng.expovariate(1 / 25)))
    if t >= end:
        return record
    record = record.assign(group=group, assignee=agent, at=t, by="desk")
    if rng.random() < 0.08:  # sent to the wrong team, and back
        t += timedelta(minutes=rng.randrange(5, 90))
        record = record.assign(group="web", assignee=rng.choice(_AGENTS), at=t, by="desk")
        record = record.assign(group=group, assignee=agent, at=t + timedelta(minutes=20), by="desk")
        t += timedelta(minutes=20)
    t = OFFICE.add(t, _whole(minutes=rng.expovariate(1 / 30)))
    record = record.start(at=t, by=agent)
    if rng.random() < 0.2:  # waiting for the caller
        t = OFFICE.add(t, _whole(hours=rng.expovariate(1 / 2)))
        record = record.hold(reason="awaiting_caller", at=t, by=agent)
        t = OFFICE.add(t, _whole(hours=rng.expovariate(1 / 6)))
        record = record.resume(at=t, by=agent)
    if rng.random() < 0.07 and record.state == "in_progress":
        t += timedelta(minutes=rng.randrange(10, 120))
        record = record.escalate(group=f"{group}-l2", reason="needs a specialist", at=t, by=agent)
    hours = rng.lognormvariate(1.6, 1.0) * (0.4 if impact == 1 else 1)
    t = OFFICE.add(t, _whole(hours=hours))
    if t >= end:
        return record  # still open when the month ends
    record = record.resolve(code=rng.choice(_CODES), notes="done", at=t, by=agent)
    if rng.random() < 0.05:
        t += timedelta(hours=rng.randrange(2, 40))
        if t >= end:
            return record
        record = record.reopen(reason="it came back", at=t, by=record.caller)
        t = OFFICE.add(t, _whole(hours=rng.lognormvariate(1, 0.8)))
        if t >= end:
            return record
        record = record.resolve(code="solution_provided", notes="fixed for good", at=t, by=agent)
    t += timedelta(days=3)
    return record.close(at=t, by="desk") if t < end else record


def _problems(
    rng: random.Random, incidents: list[Incident], end: datetime
) -> tuple[tuple[Problem, ...], list[Incident]]:
    """A problem for each configuration item with five incidents or more; links both ways."""
    by_ci: dict[str, list[int]] = {}
    for position, incident in enumerate(incidents):
        if incident.ci is not None:
            by_ci.setdefault(incident.ci, []).append(position)
    problems = []
    for n, (ci, positions) in enumerate(sorted(by_ci.items())):
        if len(positions) < 5:
            continue
        fifth = incidents[positions[4]]
        at = fifth.opened_at + timedelta(hours=2)
        if at >= end:
            continue
        problem = Problem.open(
            id=f"PRB{n + 1:04d}", title=f"Recurring incidents on {ci}", impact=2, urgency=2,
            at=at, by="problem-manager", service=fifth.service, ci=ci, category=fifth.category,
        )  # fmt: skip
        t = at
        for position in positions[:5]:
            t += timedelta(minutes=1)
            incident = incidents[position]
            problem = problem.link(kind="incident", target=incident.id, at=t, by="pm")
            when = max(t, incident.updated_at)
            if incident.state != "closed" and when < end:  # a closed record takes no links
                incidents[position] = incident.link(
                    kind="problem", target=problem.id, at=when, by="pm"
                )
        if t + timedelta(days=2) < end:  # assessed, confirmed, investigated
            problem = problem.assess(at=t + timedelta(hours=1), by="pm")
            problem = problem.confirm(at=t + timedelta(hours=2), by="pm")
            t += timedelta(days=2)
            problem = problem.record_workaround(workaround="restart the service", at=t, by="pm")
            if rng.random() < 0.5 and t + timedelta(days=3) < end:
                t += timedelta(days=3)
                problem = problem.fix(at=t, by="pm", root_cause="a memory leak after updates")
        problems.append(problem)
    return tuple(problems), incidents


def _change(rng: random.Random, k: int, first: datetime, end: datetime) -> Change:
    kind = rng.choices(list(ChangeType), [5, 4, 1])[0]
    at = _arrival(rng, first, end - timedelta(days=5))
    planned = at + timedelta(days=2 if kind is not ChangeType.EMERGENCY else 0, hours=2)
    spec = {"id": f"CHG{k + 1:04d}", "requester": "rita", "at": at, "by": "rita",
            "planned_start": planned, "implementer": "ivan"}  # fmt: skip
    if kind is ChangeType.STANDARD:
        change = Change.from_template(_RESTART, cis=["web-01"], **spec)  # type: ignore[arg-type]
    else:
        change = Change.open(
            title=rng.choice(("Upgrade shop-db", "Patch vpn-gw-1", "New mail filter")),
            change_type=kind, cis=["shop-db"], backout_plan="restore the snapshot",
            approvals=_APPROVALS[kind], planned_end=planned + timedelta(hours=3), **spec,  # type: ignore[arg-type]
        )  # fmt: skip
    t = at + timedelta(minutes=30)
    change = change.submit(at=t, by="rita")
    while change.state in ("assess", "authorize"):
        level = change.pending_level()
        t += timedelta(hours=2)
        change = change.approve(at=t, by=level.approvers[0] if level else "ann")
    start = max(planned, t + timedelta(minutes=1))
    change = change.implement(at=start, by="ivan")
    code = rng.choices(
        ["successful", "successful_with_issues", "unsuccessful", "backed_out"], [80, 8, 5, 7]
    )[0]
    notes = "" if code == "successful" else "the smoke test failed; see the log"
    change = change.complete(code=code, notes=notes, at=start + timedelta(hours=1), by="ivan")
    done = start + timedelta(days=1)
    if done >= end:
        return change
    lessons = "" if code.startswith("successful") else "test the backout on staging first"
    return change.close(outcome="reviewed", lessons=lessons, at=done, by="rita")
