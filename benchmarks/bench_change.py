"""Change conflict detection: the sweep over a year of changes, against comparing all pairs.

Builds N normal changes over one year (each 1-4 hours, on 1-2 of N/10 CIs, assigned to one
of N/20 people), then times ``all_conflicts`` with a weekly maintenance window and a
year-end freeze, and ``next_free_slot`` for one more change. Beside it, the naive way:
``conflicts(change, all_changes)`` for every change (every pair compared), timed up to
5,000 changes (it grows with the square).

    python benchmarks/bench_change.py                    # 2.5k, 5k, 10k, 20k changes
    python benchmarks/bench_change.py --sizes 10000
"""

from __future__ import annotations

import argparse
import json
import platform
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from itsmcore import Change
from itsmcore.scheduling import all_conflicts, conflicts, next_free_slot
from itsmcore.windows import Window
from timing import best_of

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2025, 1, 1, tzinfo=UTC)
MAINTENANCE = Window.weekly("sat", "22:00", "02:00", tz="Europe/Berlin", name="Saturday night")
FREEZE = Window.yearly((12, 15), (1, 5), tz="Europe/Berlin", name="year-end freeze")
NAIVE_LIMIT = 5_000


def schedule(n: int, seed: int = 1) -> list[Change]:
    rnd = random.Random(seed)
    cis, people = max(n // 10, 1), max(n // 20, 1)
    out = []
    for k in range(n):
        begin = START + timedelta(minutes=15 * rnd.randrange(365 * 24 * 4))
        c = Change.open(
            id=f"CHG{k:07d}", title="Patch", requester="rita", at=START, by="rita",
            cis=[f"ci{rnd.randrange(cis)}" for _ in range(rnd.randint(1, 2))],
            backout_plan="restore", planned_start=begin,
            planned_end=begin + timedelta(minutes=15 * rnd.randint(4, 16)),
        )  # fmt: skip
        out.append(c.assign(group="ops", assignee=f"p{rnd.randrange(people)}", at=START, by="r"))
    return out


def naive(changes: list[Change]) -> int:
    return sum(
        len(conflicts(c, changes, maintenance=MAINTENANCE, blackout=FREEZE)) for c in changes
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_500, 5_000, 10_000, 20_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, {platform.machine()}")
    print(f"{'changes':>8} {'conflicts':>10} {'sweep':>8} {'µs/change':>10} {'all pairs':>10} "
          f"{'pairs/sweep':>11} {'next slot':>10}")  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    for n in args.sizes:
        changes = schedule(n)
        swept, found = best_of(
            args.repeats,
            lambda c=changes: all_conflicts(c, maintenance=MAINTENANCE, blackout=FREEZE),
        )
        wanted = Change.open(id="WANT", title="x", requester="r", at=START, by="r",
                             cis=["ci0"], backout_plan="b")  # fmt: skip
        slot_time, slot = best_of(
            args.repeats,
            lambda c=changes, w=wanted: next_free_slot(
                w, after=START, duration=timedelta(hours=3), maintenance=MAINTENANCE,
                blackout=FREEZE, others=c,
            ),
        )  # fmt: skip
        assert slot is not None
        pairs = float("nan")
        if n <= NAIVE_LIMIT:
            pairs, total = best_of(1, lambda c=changes: naive(c))
            assert total == len(found), (total, len(found))
        results[str(n)] = {"sweep_s": swept, "all_pairs_s": pairs, "next_free_slot_s": slot_time,
                           "conflicts": len(found), "changes_per_s": n / swept}  # fmt: skip
        print(f"{n:>8,} {len(found):>10,} {swept:>7.3f}s {swept / n * 1e6:>10.1f} "
              f"{pairs:>9.3f}s {pairs / swept:>10.1f}x {slot_time * 1e3:>8.1f}ms")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
