"""The first question to a fresh business calendar, against businesstimedelta's first.

A calendar indexes the days it is asked about lazily, and keeps a per-day table and a copy of
its index on its zone's wall clock: this measures what that costs the first caller. Each
sample runs in a fresh Python process (nothing cached: zone data, holiday dates, the index),
with the libraries imported and the ``holidays`` mapping made, and times building the
calendar (or businesstimedelta's rules), then one ``elapsed`` and one ``add`` at a random
instant of 2024-2026, separately, then the same questions again on the warm calendar. The
median over the samples is printed.

    python benchmarks/bench_first_call.py --samples 15
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

_CHILD = r"""
import json, random, sys, time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo
import holidays
import businesstimedelta as btd
import pytz
from itsmcore import BusinessCalendar

seed = int(sys.argv[1])
rnd = random.Random(seed)
berlin = ZoneInfo("Europe/Berlin")
origin = datetime(2024, 1, 1, tzinfo=UTC)
start = (origin + timedelta(seconds=rnd.randrange(3 * 365 * 86_400))).astimezone(berlin)
end = start + timedelta(days=rnd.randrange(1, 30))
budget = timedelta(hours=rnd.choice([4, 8, 24, 40]))
clock = time.perf_counter
german = holidays.country_holidays("DE")  # made before either side's clock starts
if sys.argv[2] == "itsmcore":
    t0 = clock()
    calendar = BusinessCalendar.weekly(
        {"mon-fri": "09:00-17:00"}, tz="Europe/Berlin", holidays=german
    )
    t1 = clock()
    a = calendar.elapsed(start, end)
    t2 = clock()
    b = calendar.add(start, budget)
    t3 = clock()
    calendar.elapsed(start, end)
    t4 = clock()
    calendar.add(start, budget)
    t5 = clock()
else:
    tz = pytz.timezone("Europe/Berlin")
    t0 = clock()
    workday = btd.WorkDayRule(
        start_time=datetime.min.time().replace(hour=9),
        end_time=datetime.min.time().replace(hour=17),
        working_days=[0, 1, 2, 3, 4],
        tz=tz,
    )
    rules = btd.Rules([workday, btd.HolidayRule(german, tz=tz)])
    t1 = clock()
    a = rules.difference(start, end).timedelta
    t2 = clock()
    b = start + btd.BusinessTimeDelta(rules, timedelta=budget)
    t3 = clock()
    rules.difference(start, end)
    t4 = clock()
    start + btd.BusinessTimeDelta(rules, timedelta=budget)
    t5 = clock()
out = {"build": t1 - t0, "first elapsed": t2 - t1, "first add": t3 - t2,
       "again elapsed": t4 - t3, "again add": t5 - t4,
       "answers": [a.total_seconds(), b.astimezone(UTC).isoformat()]}
print(json.dumps(out))
"""


def sample(seed: int, side: str) -> dict[str, float]:
    """One fresh process's timings (seconds) and answers."""
    done = subprocess.run(  # noqa: S603 - runs this interpreter on the script's own code
        [sys.executable, "-c", _CHILD, str(seed), side],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    rows: dict[str, dict[str, list[float]]] = {"itsmcore": {}, "businesstimedelta": {}}
    for seed in range(args.samples):
        mine, peer = sample(seed, "itsmcore"), sample(seed, "businesstimedelta")
        # businesstimedelta drops microseconds from differences; the instants agree.
        assert mine["answers"][1] == peer["answers"][1], (mine, peer)
        assert abs(mine["answers"][0] - peer["answers"][0]) < 1, (mine, peer)
        for side, result in (("itsmcore", mine), ("businesstimedelta", peer)):
            for key, value in result.items():
                if key != "answers":
                    rows[side].setdefault(key, []).append(value)
    print(f"median of {args.samples} fresh processes, microseconds\n")
    print("| step | itsmcore | businesstimedelta |\n|---|---:|---:|")
    for key in rows["itsmcore"]:
        mine_us = statistics.median(rows["itsmcore"][key]) * 1e6
        peer_us = statistics.median(rows["businesstimedelta"][key]) * 1e6
        print(f"| {key} | {mine_us:,.0f} | {peer_us:,.0f} |")


if __name__ == "__main__":
    main()
