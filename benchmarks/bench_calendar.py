"""Business-time throughput and correctness: itsmcore against the Python peers.

One shared set of random cases on a Mon-Fri 09:00-17:00 Europe/Berlin calendar with German
public holidays, aware datetimes in and out (naive local times for business-duration, which
accepts nothing else):

- itsmcore ``elapsed`` / ``add`` (scalar), ``elapsed_many`` / ``add_many`` (lists of
  datetimes, and numpy/pandas arrays);
- businesstimedelta (``Rules.difference``, ``datetime + BusinessTimeDelta``);
- business-duration (``businessDuration``, elapsed only);
- pandas ``CustomBusinessHour`` (add only, whole hours only).

Peers are slow, so they run on the first ``--peer-cases`` of the cases (best of three
runs; itsmcore best of ``--repeats``). Before anything is
timed, itsmcore is cross-checked against an independent minute-walk on a sample, and every
peer answer is compared with itsmcore's; disagreements are counted and shown.

    pip install -e '.[bench]'
    python benchmarks/bench_calendar.py                 # 100k cases, 10k for the peers
    python benchmarks/bench_calendar.py --quick         # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pandas as pd

from itsmcore import BusinessCalendar
from timing import best_of

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from calendar_oracle import Oracle  # the tests' brute force, reused

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = {"mon-fri": "09:00-17:00"}
YEARS = range(2024, 2028)
SECOND = timedelta(seconds=1)


def make_cases(
    n: int, seed: int, mix: str
) -> tuple[list[datetime], list[datetime], list[timedelta]]:
    """Starts at random seconds of 2024-2026, spans and durations by ``mix``.

    ``mixed``: spans from a minute to four weeks and durations from a minute to five
    business days, log-uniformly (most are short). ``sla``: spans of one to thirty days
    (ticket ages) and durations drawn from typical resolution targets (4 h, 8 h, 3 and 5
    business days).
    """
    rnd = random.Random(seed)
    origin = datetime(2024, 1, 1, tzinfo=UTC)
    starts = [
        (origin + timedelta(seconds=rnd.randrange(3 * 365 * 86_400))).astimezone(BERLIN)
        for _ in range(n)
    ]
    if mix == "mixed":
        spans = [round(math.exp(rnd.uniform(4.1, 14.7))) for _ in starts]
        durations = [timedelta(seconds=round(math.exp(rnd.uniform(4.1, 11.9)))) for _ in starts]
    else:
        spans = [rnd.randrange(86_400, 30 * 86_400) for _ in starts]
        targets = [4, 8, 24, 40]
        durations = [timedelta(hours=rnd.choice(targets)) for _ in starts]
    ends = [s + timedelta(seconds=x) for s, x in zip(starts, spans, strict=True)]
    return starts, ends, durations


# --------------------------------------------------------------------------- peers


def businesstimedelta_rules() -> Any:
    import businesstimedelta as btd  # noqa: PLC0415
    import pytz  # noqa: PLC0415

    tz = pytz.timezone("Europe/Berlin")
    workday = btd.WorkDayRule(
        start_time=datetime.min.time().replace(hour=9),
        end_time=datetime.min.time().replace(hour=17),
        working_days=[0, 1, 2, 3, 4],
        tz=tz,
    )
    days_off = btd.HolidayRule(holidays.country_holidays("DE", years=YEARS), tz=tz)
    return btd.Rules([workday, days_off])


def run_businesstimedelta_elapsed(
    rules: Any, starts: list[datetime], ends: list[datetime]
) -> list[timedelta]:
    return [rules.difference(s, e).timedelta for s, e in zip(starts, ends, strict=True)]


def run_businesstimedelta_add(
    rules: Any, starts: list[datetime], durations: list[timedelta]
) -> list[datetime]:
    import businesstimedelta as btd  # noqa: PLC0415

    pairs = zip(starts, durations, strict=True)
    return [s + btd.BusinessTimeDelta(rules, timedelta=d) for s, d in pairs]


def run_business_duration(starts: list[datetime], ends: list[datetime]) -> list[timedelta]:
    from business_duration import businessDuration  # noqa: PLC0415

    days_off = list(holidays.country_holidays("DE", years=YEARS))
    nine, five = datetime.min.time().replace(hour=9), datetime.min.time().replace(hour=17)
    out = []
    for s, e in zip(starts, ends, strict=True):
        # It takes naive datetimes only: a user passes local wall times.
        seconds = businessDuration(
            s.replace(tzinfo=None), e.replace(tzinfo=None), nine, five,
            holidaylist=days_off, unit="sec",
        )  # fmt: skip
        out.append(timedelta(seconds=float(seconds)))
    return out


def run_pandas_add(starts: list[datetime], hours: list[int]) -> list[datetime]:
    offset = pd.offsets.CustomBusinessHour(
        start="09:00", end="17:00", holidays=list(holidays.country_holidays("DE", years=YEARS))
    )
    return [
        (pd.Timestamp(s) + h * offset).to_pydatetime() for s, h in zip(starts, hours, strict=True)
    ]


# --------------------------------------------------------------------------- checks


def disagreements(
    name: str, mine: list[Any], theirs: list[Any], cases: list[Any], tol: timedelta | None = None
) -> dict[str, Any]:
    wrong = []
    for k, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        if isinstance(a, datetime) and isinstance(b, datetime):
            same = a.astimezone(UTC) == b.astimezone(UTC)
        else:
            same = a == b if tol is None else abs(a - b) <= tol
        if not same:
            wrong.append(k)
    examples = [
        {"case": str(cases[k]), "itsmcore": str(mine[k]), name: str(theirs[k])} for k in wrong[:3]
    ]
    return {"cases": len(mine), "disagree": len(wrong), "examples": examples}


def cross_check(calendar: BusinessCalendar, n: int, seed: int) -> int:
    """itsmcore against the tests' minute-walk oracle on minute-aligned cases."""
    days_off = list(holidays.country_holidays("DE", years=YEARS))
    oracle = Oracle(HOURS, "Europe/Berlin", holidays=days_off)
    rnd = random.Random(seed)
    origin = datetime(2024, 3, 20, tzinfo=UTC)
    for _ in range(n):
        a = origin + timedelta(minutes=rnd.randrange(2 * 365 * 1440))
        b = a + timedelta(minutes=rnd.randrange(1, 4 * 1440))
        d = timedelta(minutes=rnd.randrange(1, 16 * 60))
        assert calendar.elapsed(a, b) == oracle.elapsed(a, b), (a, b)
        assert calendar.add(a, d) == oracle.add(a, d), (a, d)
    return n


def timed_loop(
    repeats: int, fn: Callable[..., Any], xs: list[Any], ys: list[Any]
) -> tuple[float, list[Any]]:
    """Best time of ``[fn(x, y) ...]`` over the pairs, and its answers."""
    return best_of(repeats, lambda: [fn(x, y) for x, y in zip(xs, ys, strict=True)])


def measure_itsmcore(
    calendar: BusinessCalendar,
    cases: tuple[list[datetime], list[datetime], list[timedelta]],
    repeats: int,
) -> tuple[dict[str, float], list[timedelta], list[datetime]]:
    starts, ends, durations = cases
    n = len(starts)
    # Warm up: the calendar indexes the days it is asked about once, lazily.
    calendar.elapsed_many(starts, ends)
    calendar.add_many(starts, durations)
    rates: dict[str, float] = {}
    t, elapsed = timed_loop(repeats, calendar.elapsed, starts, ends)
    rates["itsmcore elapsed"] = n / t
    t, added = timed_loop(repeats, calendar.add, starts, durations)
    rates["itsmcore add"] = n / t
    t, many = best_of(repeats, lambda: calendar.elapsed_many(starts, ends))
    assert many == elapsed
    rates["itsmcore elapsed_many (list)"] = n / t
    t, many = best_of(repeats, lambda: calendar.add_many(starts, durations))
    assert many == added
    rates["itsmcore add_many (list)"] = n / t
    start_col, end_col = pd.Series(pd.DatetimeIndex(starts)), pd.Series(pd.DatetimeIndex(ends))
    duration_arr = np.array(durations, dtype="timedelta64[us]")
    t, arr = best_of(repeats, lambda: calendar.elapsed_many(start_col, end_col))
    assert arr.tolist() == elapsed
    rates["itsmcore elapsed_many (pandas)"] = n / t
    t, arr = best_of(repeats, lambda: calendar.add_many(start_col, duration_arr))
    assert [x.replace(tzinfo=UTC) for x in arr.tolist()] == [a.astimezone(UTC) for a in added]
    rates["itsmcore add_many (pandas)"] = n / t
    # The same instants as UTC-aware datetimes (how the library itself stores them): no
    # zone lookup on the way in or out.
    utc_starts, utc_ends = [s.astimezone(UTC) for s in starts], [e.astimezone(UTC) for e in ends]
    t, answers = timed_loop(repeats, calendar.elapsed, utc_starts, utc_ends)
    assert answers == elapsed
    rates["itsmcore elapsed (UTC in)"] = n / t
    t, answers = timed_loop(repeats, calendar.add, utc_starts, durations)
    assert answers == [a.astimezone(UTC) for a in added]
    rates["itsmcore add (UTC in)"] = n / t
    return rates, elapsed, added


def measure_span(
    calendar: BusinessCalendar, starts: list[datetime], repeats: int
) -> dict[str, float]:
    """The same starts: one-hour spans and durations against 90-day spans and 60-day durations."""
    n = len(starts)
    hour, quarter = (
        [s + timedelta(hours=1) for s in starts],
        [s + timedelta(days=90) for s in starts],
    )
    one, sixty = [timedelta(hours=1)] * n, [timedelta(hours=8 * 60)] * n
    calendar.elapsed_many(starts, quarter)
    calendar.add_many(starts, sixty)
    t_hour, _ = timed_loop(repeats, calendar.elapsed, starts, hour)
    t_quarter, _ = timed_loop(repeats, calendar.elapsed, starts, quarter)
    t_one, _ = timed_loop(repeats, calendar.add, starts, one)
    t_sixty, _ = timed_loop(repeats, calendar.add, starts, sixty)
    return {
        "elapsed: 90-day spans / 1-hour spans (time)": t_quarter / t_hour,
        "add: 60-business-day / 1-hour durations (time)": t_sixty / t_one,
    }


def measure_peers(
    calendar: BusinessCalendar,
    cases: tuple[list[datetime], list[datetime], list[timedelta]],
    mine: tuple[list[timedelta], list[datetime]],
    repeats: int,
) -> tuple[dict[str, float], dict[str, Any]]:
    starts, ends, durations = cases
    m = len(starts)
    rules = businesstimedelta_rules()
    rates: dict[str, float] = {}
    checks: dict[str, Any] = {}
    t, peer = best_of(repeats, lambda: run_businesstimedelta_elapsed(rules, starts, ends))
    rates["businesstimedelta elapsed"] = m / t
    spans = list(zip(starts, ends, strict=True))
    checks["businesstimedelta elapsed"] = disagreements("peer", mine[0][:m], peer, spans)
    t, peer = best_of(repeats, lambda: run_businesstimedelta_add(rules, starts, durations))
    rates["businesstimedelta add"] = m / t
    adds = list(zip(starts, durations, strict=True))
    checks["businesstimedelta add"] = disagreements("peer", mine[1][:m], peer, adds)
    utc_starts, utc_ends = [s.astimezone(UTC) for s in starts], [e.astimezone(UTC) for e in ends]
    t, _ = best_of(repeats, lambda: run_businesstimedelta_elapsed(rules, utc_starts, utc_ends))
    rates["businesstimedelta elapsed (UTC in)"] = m / t
    t, _ = best_of(repeats, lambda: run_businesstimedelta_add(rules, utc_starts, durations))
    rates["businesstimedelta add (UTC in)"] = m / t
    t, peer = best_of(repeats, lambda: run_business_duration(starts, ends))
    rates["business-duration elapsed"] = m / t
    checks["business-duration elapsed"] = disagreements(
        "peer", mine[0][:m], peer, spans, tol=SECOND
    )
    hours = [max(1, round(d / timedelta(hours=1))) for d in durations]
    whole = [timedelta(hours=h) for h in hours]
    mine_whole = [calendar.add(s, d) for s, d in zip(starts, whole, strict=True)]
    t, peer = best_of(repeats, lambda: run_pandas_add(starts, hours))
    rates["pandas CustomBusinessHour add"] = m / t
    checks["pandas CustomBusinessHour add"] = disagreements(
        "peer", mine_whole, peer, list(zip(starts, whole, strict=True))
    )
    return rates, checks


RATIOS = {
    "elapsed vs businesstimedelta": ("itsmcore elapsed", "businesstimedelta elapsed"),
    "add vs businesstimedelta": ("itsmcore add", "businesstimedelta add"),
    "elapsed vs businesstimedelta, UTC in": (
        "itsmcore elapsed (UTC in)",
        "businesstimedelta elapsed (UTC in)",
    ),
    "add vs businesstimedelta, UTC in": ("itsmcore add (UTC in)", "businesstimedelta add (UTC in)"),
    "elapsed vs business-duration": ("itsmcore elapsed", "business-duration elapsed"),
    "add vs pandas CustomBusinessHour": ("itsmcore add", "pandas CustomBusinessHour add"),
    "elapsed_many (list) vs elapsed": ("itsmcore elapsed_many (list)", "itsmcore elapsed"),
    "add_many (list) vs add": ("itsmcore add_many (list)", "itsmcore add"),
    "elapsed_many (pandas) vs elapsed": ("itsmcore elapsed_many (pandas)", "itsmcore elapsed"),
    "add_many (pandas) vs add": ("itsmcore add_many (pandas)", "itsmcore add"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--peer-cases", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--quick", action="store_true", help="5k cases, 500 for peers")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.quick:
        args.cases, args.peer_cases, args.repeats = 5_000, 500, 1
    n, m = args.cases, min(args.peer_cases, args.cases)
    calendar = BusinessCalendar.weekly(
        HOURS, tz="Europe/Berlin", holidays=holidays.country_holidays("DE")
    )
    checked = cross_check(calendar, 200 if args.quick else 1000, args.seed)
    version = platform.python_version()
    print(f"{n:,} cases ({m:,} for the peers), best of {args.repeats}, Python {version}")
    print(f"itsmcore against the tests' minute-walk oracle: {checked} cases, all equal")
    results: dict[str, Any] = {"cases": n, "peer_cases": m, "python": version, "mixes": {}}
    for mix in ("mixed", "sla"):
        cases = make_cases(n, args.seed, mix)
        rates, elapsed, added = measure_itsmcore(calendar, cases, args.repeats)
        peer_cases = (cases[0][:m], cases[1][:m], cases[2][:m])
        mine = (elapsed, added)
        peer_rates, checks = measure_peers(calendar, peer_cases, mine, min(args.repeats, 3))
        rates |= peer_rates
        ratios = {name: rates[a] / rates[b] for name, (a, b) in RATIOS.items()}
        results["mixes"][mix] = {"ops_per_s": rates, "ratios": ratios, "correctness": checks}
        print(f"\n## {mix} cases\n\n| operation | ops/s |\n|---|---:|")
        for name, rate in rates.items():
            print(f"| {name} | {rate:,.0f} |")
        print("\n| ratio | value |\n|---|---:|")
        for name, value in ratios.items():
            print(f"| {name} | {value:,.1f} |")
        print("\ndisagreements with itsmcore:")
        for name, check in checks.items():
            print(f"- {name}: {check['disagree']} of {check['cases']}")
            for example in check["examples"][:2]:
                print(f"    {example}")
    span = measure_span(calendar, make_cases(n, args.seed, "mixed")[0], args.repeats)
    results["span"] = span
    print("\n## cost against span length\n\n| ratio | value |\n|---|---:|")
    for name, value in span.items():
        print(f"| {name} | {value:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
