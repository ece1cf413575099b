"""Recurrence detection: time over 25k-200k incidents, and against the floor of the job.

Builds a year of random incidents over 3,000 CIs (plus the seed's 52 weekly restarts) as
real ``Incident`` records, then times ``detect_recurring`` grouping by CI (with a business
calendar, so the after-hours share is computed too) and by normalised short description.
Beside it runs the floor: a hand-written pass that does only what any such detection must
(group by key, count, and count each group's occurrences by hour of the week in the zone),
and the same with pandas (``groupby`` + ``value_counts``) when pandas is installed.

    python benchmarks/bench_problem.py                  # 25k, 50k, 100k, 200k incidents
    python benchmarks/bench_problem.py --sizes 100000   # one size
"""

from __future__ import annotations

import argparse
import json
import platform
import random
from collections import defaultdict
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from itsmcore import BusinessCalendar, Incident
from itsmcore.recurrence import detect_recurring
from timing import best_of

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2025, 1, 6, tzinfo=BERLIN)  # wall-clock steps: the restarts' Tuesdays
START = datetime(2025, 1, 6, tzinfo=UTC)  # exact steps: random times never land in a gap
OFFICE = BusinessCalendar.weekly({"mon-fri": "08:00-17:00"}, tz="Europe/Berlin")
TITLES = ("disk full on {}", "cannot log in to {}", "{} slow", "printer jam #{}", "VPN drops")


def incidents(n: int, seed: int = 1) -> list[Incident]:
    rnd = random.Random(seed)
    out = []
    for k in range(n - 52):
        at = START + timedelta(seconds=rnd.randrange(365 * 86_400))
        ci = f"CI{rnd.randrange(3_000):04d}"
        title = rnd.choice(TITLES).format(rnd.randrange(10_000))
        inc = Incident.open(id=f"N{k}", title=title, caller="c", impact=2, urgency=2, at=at,
                            by="desk", ci=ci)  # fmt: skip
        done = at + timedelta(minutes=rnd.randrange(5, 600))
        out.append(inc.resolve(code="solution_provided", notes="done", at=done, by="desk"))
    for w in range(52):
        at = MONDAY + timedelta(days=7 * w + 1, hours=18, minutes=rnd.randrange(150))
        inc = Incident.open(id=f"R{w}", title="Restart billing app", caller="monitor",
                            impact=2, urgency=2, at=at, by="oncall", ci="app-billing")  # fmt: skip
        out.append(inc.resolve(code="workaround_provided", notes="restarted",
                               at=at + timedelta(minutes=40), by="oncall"))  # fmt: skip
    return out


def floor(records: list[Incident]) -> dict[Hashable, list[int]]:
    """Group by CI, count, and count by hour of the week in Berlin: nothing else."""
    groups: dict[Hashable, list[int]] = defaultdict(lambda: [0] * 168)
    for inc in records:
        t = inc.opened_at.astimezone(BERLIN)
        groups[inc.ci][t.weekday() * 24 + t.hour] += 1
    return groups


def pandas_floor(records: list[Incident]) -> Any:
    import pandas as pd  # noqa: PLC0415 - optional

    frame = pd.DataFrame({"ci": [i.ci for i in records], "at": [i.opened_at for i in records]})
    local = pd.to_datetime(frame["at"], utc=True).dt.tz_convert("Europe/Berlin")
    frame["how"] = local.dt.day_of_week * 24 + local.dt.hour
    return frame.groupby("ci")["how"].value_counts()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000, 200_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    print(f"Python {platform.python_version()}, {platform.machine()}")
    print(f"{'incidents':>10} {'by ci':>9} {'by title':>9} {'µs/inc':>7} {'floor':>8} "
          f"{'pandas':>8} {'ci / floor':>10}")  # fmt: skip
    for n in args.sizes:
        records = incidents(n)
        by_ci, found = best_of(args.repeats, lambda r=records: detect_recurring(r, calendar=OFFICE))
        assert found[0].key == "app-billing", found[0]
        assert str(found[0].phase) == "Tuesday 18:00-21:00"
        by_title, _ = best_of(args.repeats, lambda r=records: detect_recurring(r, by="title"))
        plain, groups = best_of(args.repeats, lambda r=records: floor(r))
        assert sum(map(sum, groups.values())) == n
        try:
            frame, _ = best_of(args.repeats, lambda r=records: pandas_floor(r))
        except ImportError:
            frame = float("nan")
        results[str(n)] = {
            "itsmcore_by_ci_s": by_ci,
            "itsmcore_by_title_s": by_title,
            "floor_s": plain,
            "pandas_s": frame,
            "itsmcore_per_s": n / by_ci,
        }
        print(f"{n:>10,} {by_ci:>8.3f}s {by_title:>8.3f}s {by_ci / n * 1e6:>7.2f} "
              f"{plain:>7.3f}s {frame:>7.3f}s {by_ci / plain:>9.2f}x")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
