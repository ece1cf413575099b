"""Importing the bundled real event log, side by side with ``pandas.read_csv`` of it.

Reads ``incident_event_log.zip`` (141,712 rows, 24,918 incidents; see
``../shared/data/README.md``) in one process, alternating the two so that both see the same
machine: pandas only parses the CSV into a frame; ``read_incident_log`` parses it, checks
it, and rebuilds every incident with its full history. Prints each side's best time and the
ratio (the target is at most 3x).

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
    best = {"pandas.read_csv": float("inf"), "read_incident_log": float("inf")}
    report = None
    for _ in range(args.repeats):  # alternate, so both sides see the same load
        start = time.perf_counter()
        frame = pd.read_csv(LOG)
        best["pandas.read_csv"] = min(best["pandas.read_csv"], time.perf_counter() - start)
        del frame
        start = time.perf_counter()
        result = read_incident_log(LOG, zone="UTC")
        best["read_incident_log"] = min(best["read_incident_log"], time.perf_counter() - start)
        report = result.report
        del result
    assert report is not None
    ratio = best["read_incident_log"] / best["pandas.read_csv"]
    print(f"python {platform.python_version()}, pandas {pd.__version__}, best of {args.repeats}")
    print(f"pandas.read_csv      {best['pandas.read_csv']:.3f} s  ({report.rows:,} rows)")
    print(
        f"read_incident_log    {best['read_incident_log']:.3f} s  ({report.incidents:,} "
        f"incidents, {report.events:,} events)"
    )
    print(f"ratio                {ratio:.2f} x")
    if args.json is not None:
        args.json.write_text(json.dumps({**best, "ratio": ratio, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
