"""SLA evaluation throughput: resolution and response clocks over 100k incident histories.

Each incident has about ten events (open, assign, start, hold, resume, comment,
reprioritise, hold, resume, resolve, at random gaps) and is evaluated on a Mon-Fri
09:00-17:00 Europe/Berlin calendar with German holidays. ``--workload walks`` draws the
histories instead as random walks through the incident workflow, with the generator the
tests' hypothesis strategy uses (``itsmcore.testing.random_history``). Reported per
evaluation, one core: ``evaluate`` and ``next_event_at`` for each preset, and
``evaluate_many`` with both presets sharing one replay of each history, as rows and as a
pandas DataFrame. Before timing,
every figure of a sample is checked against a direct interval-by-interval computation.

    python benchmarks/bench_sla.py             # 100k incidents
    python benchmarks/bench_sla.py --n 10000
    python benchmarks/bench_sla.py --n 10000 --workload walks --steps 30
"""

from __future__ import annotations

import argparse
import json
import platform
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import holidays

from itsmcore import BusinessCalendar, Incident, Priority
from itsmcore.sla import SLADefinition, evaluate_many
from timing import best_of

H = timedelta(hours=1)
TARGETS = {Priority.P1: 4 * H, Priority.P2: 8 * H, Priority.P3: 24 * H, Priority.P4: 40 * H}


def histories(n: int, seed: int) -> list[Incident]:
    rnd = random.Random(seed)
    out = []
    for k in range(n):
        t = datetime(2025, 1, 6, 8, tzinfo=UTC) + timedelta(minutes=rnd.randrange(300 * 1440))

        def later(t: datetime) -> datetime:
            return t + timedelta(minutes=rnd.randrange(5, 600))

        i = Incident.open(
            id=f"INC{k:06d}", title="Printer jam", caller="mia", at=t, by="desk",
            impact=rnd.choice([1, 2, 3]), urgency=rnd.choice([1, 2, 3]),
        )  # fmt: skip
        t = later(t)
        i = i.assign(group="desk", at=t, by="desk")
        t = later(t)
        i = i.start(at=t, by="sam")
        t = later(t)
        i = i.hold(reason=rnd.choice(["awaiting_caller", "awaiting_vendor"]), at=t, by="sam")
        t = later(t)
        i = i.resume(at=t, by="sam")
        t = later(t)
        i = i.comment(text="any news?", at=t, by="mia")
        t = later(t)
        i = i.reprioritize(urgency=rnd.choice([1, 2, 3]), reason="scope", at=t, by="sam")
        t = later(t)
        i = i.hold(reason="awaiting_caller", at=t, by="sam")
        t = later(t)
        i = i.resume(at=t, by="sam")
        if rnd.random() < 0.8:  # most are resolved, some are still open
            i = i.resolve(code="solution_provided", notes="fixed", at=later(t), by="sam")
        out.append(i)
    return out


def walks(n: int, seed: int, steps: int) -> list[Incident]:
    """Random walks through the incident workflow, ``steps`` attempts each (seeded)."""
    from itsmcore.testing import random_history  # noqa: PLC0415 - needs hypothesis and pytest

    rnd = random.Random(seed)
    start = datetime(2025, 1, 6, 8, tzinfo=UTC)
    return [
        random_history(
            Incident,
            rnd,
            record_id=f"INC{k:06d}",
            at=start + timedelta(minutes=rnd.randrange(300 * 1440)),
            steps=steps,
        )
        for k in range(n)
    ]


def check(definition: SLADefinition, records: list[Incident], at: datetime) -> int:
    """Business elapsed of a sample, against summing the calendar over running stretches."""
    calendar = definition.calendar
    for record in records:
        status = definition.evaluate(record, at=at)
        steps = record.timeline()
        ends = [e.at for e, _ in steps[1:]] + [at]
        running = timedelta(0)
        for (event, snapshot), end in zip(steps, ends, strict=True):
            if snapshot.state in ("new", "in_progress"):
                running += calendar.elapsed(event.at, end)
        assert status.business_elapsed == running, record.id
    return len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workload", choices=["scripted", "walks"], default="scripted")
    parser.add_argument("--steps", type=int, default=12, help="attempts per walk")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    calendar = BusinessCalendar.weekly(
        {"mon-fri": "09:00-17:00"}, tz="Europe/Berlin", holidays=holidays.country_holidays("DE")
    )
    targets = {**TARGETS, Priority.P5: None}
    resolution = SLADefinition.incident_resolution(targets, calendar)
    response = SLADefinition.incident_response(
        {p: 30 * timedelta(minutes=1) for p in Priority}, calendar
    )
    if args.workload == "walks":
        records = walks(args.n, args.seed, args.steps)
    else:
        records = histories(args.n, args.seed)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    events = sum(len(r.history) for r in records) / len(records)
    checked = check(resolution, records[:2000], at)
    for r in records[:1000]:  # warm the calendar's index
        resolution.evaluate(r, at=at)

    n = len(records)
    rates: dict[str, float] = {}
    for name, definition in (("resolution", resolution), ("response", response)):
        t, _ = best_of(args.repeats, lambda d=definition: [d.evaluate(r, at=at) for r in records])
        rates[f"{name}: evaluate"] = n / t
        t, _ = best_of(
            args.repeats, lambda d=definition: [d.next_event_at(r, at=at) for r in records]
        )
        rates[f"{name}: next_event_at"] = n / t
    both = [resolution, response]
    t, _ = best_of(args.repeats, lambda: evaluate_many(records, both, at=at))
    rates["both presets: evaluate_many (per evaluation)"] = 2 * n / t
    t, _ = best_of(args.repeats, lambda: evaluate_many(records, both, at=at, frame=True))
    rates["both presets: evaluate_many frame=True (per evaluation)"] = 2 * n / t

    print(f"{n:,} incidents, {events:.1f} events each, best of {args.repeats}, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"figures of {checked:,} incidents checked against summing the calendar directly")
    print("\n| operation | evaluations/s | µs each |\n|---|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} |")
    if args.json:
        payload = {"n": n, "events_per_incident": events, "evaluations_per_s": rates}
        Path(args.json).write_text(json.dumps(payload, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
