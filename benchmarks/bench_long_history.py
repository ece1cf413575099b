"""What a verb and a walk cost per event as a record's history grows.

Builds one incident by ``comment`` up to each length (a verb appends one event to an immutable
record, so it copies the history: the cost per verb grows with the length, which ``MAX_EVENTS``
bounds), then rebuilds each record with ``Incident.replay`` and walks it as an SLA clock
without declared reads does (the scratch record with its ``history`` kept current). Prints
microseconds per event at each length; ``--json`` writes events per second for
``benchmarks/compare.py``:

    python benchmarks/bench_long_history.py
    python benchmarks/compare.py --against HEAD~1 --rounds 3 bench_long_history.py
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from itsmcore import Incident

START = datetime(2026, 1, 5, 9, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def grow(lengths: list[int]) -> tuple[dict[int, float], dict[int, Incident]]:
    """Seconds per verb between consecutive lengths, and the record at each length."""
    incident = Incident.open(
        id="INC1", title="grows", caller="c", impact=3, urgency=3, at=START, by="a"
    )
    per_verb: dict[int, float] = {}
    kept: dict[int, Incident] = {}
    done = 1
    for length in lengths:
        began = time.perf_counter()
        for i in range(done, length):
            incident = incident.comment(text="still here", at=START + i * SECOND, by="a")
        per_verb[length] = (time.perf_counter() - began) / (length - done)
        kept[length], done = incident, length
    return per_verb, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="100,1000,3000,9000")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    verbs: dict[int, float] = {}
    walks: dict[int, float] = {}
    replays: dict[int, float] = {}
    for _ in range(args.repeats):
        per_verb, kept = grow(lengths)
        for length, record in kept.items():
            verbs[length] = min(verbs.get(length, 1.0), per_verb[length])
            began = time.perf_counter()
            assert Incident.replay(record.history) == record
            replays[length] = min(replays.get(length, 1.0), (time.perf_counter() - began) / length)
            seen: list[int] = []
            keep = seen.append
            began = time.perf_counter()
            record._walk(lambda _, now, keep=keep: keep(now.version))  # noqa: SLF001
            walks[length] = min(walks.get(length, 1.0), (time.perf_counter() - began) / length)
            assert seen == list(range(1, length + 1))
    print("| history length | us a verb (since the previous length) ", end="")
    print("| us an event replayed | us an event walked |")
    print("|---:|---:|---:|---:|")
    for length in lengths:
        print(
            f"| {length:,} | {verbs[length] * 1e6:.1f} | {replays[length] * 1e6:.2f} "
            f"| {walks[length] * 1e6:.2f} |"
        )
    if args.json:
        rates = {f"verb at {n:,}": 1 / verbs[n] for n in lengths}
        rates |= {f"replay of {n:,}": 1 / replays[n] for n in lengths}
        rates |= {f"walk of {n:,}": 1 / walks[n] for n in lengths}
        Path(args.json).write_text(json.dumps({"evaluations_per_s": rates}), encoding="utf-8")


if __name__ == "__main__":
    main()
