"""Importing the bundled real event log, side by side with ``pandas.read_csv`` of it.

Reads ``incident_event_log.zip`` (141,712 rows, 24,918 incidents; see
``../shared/data/README.md``) in one process, alternating the two so that both see the same
machine: pandas only parses the CSV into a frame; ``read_incident_log`` parses it, checks
it, and rebuilds every incident with its full history — by default with pyarrow's C
tokenizer, and once more with ``engine="python"`` (the pure-Python reader). Prints each
side's best time and its ratio to pandas (the target is at most 3x).

    python benchmarks/bench_import.py                # best of 5 each
    python benchmarks/bench_import.py --repeats 9 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pandas as pd

from itsmcore.io import read_incident_log

_PLACES = [
    Path(os.environ.get("ITSMCORE_SHARED_DATA", "/nonexistent")),
    Path(__file__).resolve().parents[2] / "shared" / "data",
    Path("/work/shared/data"),
]
LOG = next(
    (p / "incident_event_log.zip" for p in _PLACES if (p / "incident_event_log.zip").exists()), None
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if LOG is None:
        raise SystemExit("the bundled log is not there: set ITSMCORE_SHARED_DATA")
    sides = {"pandas.read_csv": lambda: pd.read_csv(LOG),
             "read_incident_log": lambda: read_incident_log(LOG, zone="UTC"),
             "  engine='python'": lambda: read_incident_log(LOG, zone="UTC", engine="python"),
             }  # fmt: skip
    wall = dict.fromkeys(sides, float("inf"))
    cpu = dict.fromkeys(sides, float("inf"))
    sides["pandas.read_csv"]()  # pandas imports its readers on first use: not timed
    sides["read_incident_log"]()  # nor pyarrow
    result = None
    for _ in range(args.repeats):  # alternate, so both sides see the same load
        for name, run in sides.items():
            result = None
            start, start_cpu = time.perf_counter(), time.process_time()
            result = run()
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    report = result.report
    print(f"python {platform.python_version()}, pandas {pd.__version__}, best of {args.repeats}")
    print(f"{report.rows:,} rows, {report.incidents:,} incidents, {report.events:,} events")
    print(f"{'':20} {'wall s':>8} {'cpu s':>8} {'x wall':>7} {'x cpu':>7}")
    for name in sides:
        print(f"{name:20} {wall[name]:8.3f} {cpu[name]:8.3f} "
              f"{wall[name] / wall['pandas.read_csv']:6.2f}x "
              f"{cpu[name] / cpu['pandas.read_csv']:6.2f}x")  # fmt: skip
    ratio = wall["read_incident_log"] / wall["pandas.read_csv"]
    ratio_cpu = cpu["read_incident_log"] / cpu["pandas.read_csv"]
    if args.json is not None:
        out = {"wall": wall, "cpu": cpu, "ratio": ratio, "ratio_cpu": ratio_cpu}
        args.json.write_text(json.dumps({**out, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
