"""The floor for SLA evaluation: a hand-written resolution clock beside the library's.

What any engine must do for the resolution preset on bench_sla.py's incident histories,
written for exactly that case and nothing else: one pass over the events reading the state
(and the priority of a reprioritisation), the running and paused stretches measured on the
same business calendar, the warnings, due and breach instants, and the same typed
``SLAStatus``. No policies, no other record kinds, no declared reads, no caches. Every
result is checked equal to ``SLADefinition.evaluate``'s before timing; then both are timed
in one process, in alternating rounds (best of each).

    python benchmarks/floor_sla.py --n 20000
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import holidays

from bench_sla import TARGETS, histories
from itsmcore import BusinessCalendar, Priority
from itsmcore.incident import IncidentReprioritized
from itsmcore.sla import CycleStatus, SLADefinition, SLAStage, SLAStatus
from itsmcore.workflow import CANCELED, MET, PAUSED

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
RUN, HOLD = SLAStage.IN_PROGRESS, SLAStage.PAUSED


def floor(definition: SLADefinition) -> Any:
    """A hand-written ``evaluate`` of the resolution preset (RECOMPUTE, RESUME) in UTC."""
    calendar = definition.calendar
    targets = {k: None if v is None else v // US for k, v in definition.targets.items()}
    warnings = definition.warnings

    def evaluate(record: Any, now: int) -> SLAStatus:  # noqa: PLR0912 - one function, on purpose
        workflow = record.workflow
        met, canceled, paused = (workflow.tagged(t) for t in (MET, CANCELED, PAUSED))
        history = record.history
        priority = history[0].priority
        marks: list[tuple[int, SLAStage]] = []
        stage = None
        for event in history:
            t = (event.at - EPOCH) // US
            if t > now:
                break
            if type(event) is IncidentReprioritized:
                priority = event.priority
            s = event.state
            new = (
                SLAStage.COMPLETED if s in met
                else SLAStage.CANCELED if s in canceled
                else HOLD if s in paused
                else RUN
            )  # fmt: skip
            if new is not stage:
                marks.append((t, new))
                stage = new
        ended = None if stage is RUN or stage is HOLD else marks[-1][0]
        end = now if ended is None else ended
        started = marks[0][0]
        ruler = calendar.ruler(started, end)
        times = [a for a, _ in marks]
        times.append(end)
        positions = ruler.positions(times)
        done = held = wall = wall_held = 0
        for k, (a, s) in enumerate(marks):
            if s is RUN:
                done += positions[k + 1] - positions[k]
                wall += times[k + 1] - a
            elif s is HOLD:
                held += positions[k + 1] - positions[k]
                wall_held += times[k + 1] - a
        target = targets[priority]
        crossed: list[tuple[Any, datetime]] = []
        due = breached_at = None
        if target is not None:
            wanted = [(-(-target * f.numerator // f.denominator), f) for f in warnings]
            wanted = [(m, f) for m, f in wanted if 0 < m <= done]
            if done >= target:
                wanted.append((target, None))
            total = 0
            k_wanted = 0
            found = []
            for k, (a, s) in enumerate(marks):
                if s is not RUN or k_wanted == len(wanted):
                    continue
                spent = positions[k + 1] - positions[k]
                while k_wanted < len(wanted) and total + spent >= wanted[k_wanted][0]:
                    found.append(
                        ruler.instant(positions[k] + wanted[k_wanted][0] - total, not_before=a)
                    )
                    k_wanted += 1
                total += spent
            crossed = [
                (f, EPOCH + US * t)
                for (_, f), t in zip(wanted, found, strict=True)
                if f is not None
            ]
            if done < target:
                due = EPOCH + US * ruler.instant(positions[-1] + target - done, not_before=end)
            else:
                due = EPOCH + US * (found[-1] if target else started)
                if done > target:
                    breached_at = due
        cycle = CycleStatus(
            stage, priority, None if target is None else US * target, EPOCH + US * started,
            None if ended is None else EPOCH + US * ended, US * wall, US * done, US * wall_held,
            US * held, None if target is None else US * (target - done), due,
            breached_at is not None, breached_at,
            100 * done / target if target else None, tuple(crossed),
        )  # fmt: skip
        return SLAStatus.of(definition.name, EPOCH + US * now, (cycle,))

    return evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    calendar = BusinessCalendar.weekly(
        {"mon-fri": "09:00-17:00"}, tz="Europe/Berlin", holidays=holidays.country_holidays("DE")
    )
    resolution = SLADefinition.incident_resolution({**TARGETS, Priority.P5: None}, calendar)
    records = histories(args.n, 7)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    now = (at - EPOCH) // US
    hand = floor(resolution)
    for r in records:  # the same answers, every one
        assert hand(r, now) == resolution.evaluate(r, at=at), r.id
    gc.collect()
    gc.freeze()  # both sides keep their results: only the collector's view of the records
    best = {"library": float("inf"), "floor": float("inf")}
    for _ in range(args.rounds):
        for side in ("library", "floor"):
            start = time.perf_counter()
            if side == "floor":
                out = [hand(r, now) for r in records]
            else:
                out = [resolution.evaluate(r, at=at) for r in records]
            best[side] = min(best[side], time.perf_counter() - start)
            del out
    rates = {f"resolution: evaluate, {side}": args.n / t for side, t in best.items()}
    print(f"{args.n:,} incidents, best of {args.rounds} alternating rounds")
    print("\n| evaluate | evaluations/s | µs each |\n|---|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} |")
    print(f"\nlibrary / floor time: {best['library'] / best['floor']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"evaluations_per_s": rates}, indent=2), "utf-8")


if __name__ == "__main__":
    main()
