"""KPIs over the bundled ServiceNow log: the time of each, as a notebook would call them.

Imports the log (../shared/data/incident_event_log.zip) into ``Incident`` records through
``itsmcore.io``, then times each KPI of ``itsmcore.analytics`` over all of them, best of
three.

    python benchmarks/bench_kpis.py
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from itsmcore import BusinessCalendar, Priority, SLADefinition
from itsmcore import analytics as kpi
from itsmcore.io import read_incident_log
from timing import best_of

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import test_real_log as real

H = timedelta(hours=1)
CAL = BusinessCalendar.weekly({"mon-fri": "08:00-18:00"}, tz="Europe/Lisbon")
TARGETS = {Priority.P1: 8 * H, Priority.P2: 24 * H, Priority.P3: 72 * H, Priority.P4: 120 * H,
           Priority.P5: None}  # fmt: skip
SLAS = [
    SLADefinition.incident_response(dict.fromkeys(Priority, 4 * H), CAL),
    SLADefinition.incident_resolution(TARGETS, CAL),
]


def load() -> list:
    return list(read_incident_log(real.LOG, zone="UTC").incidents.values())


def main() -> None:
    if not real.LOG.exists():
        raise SystemExit(f"the bundled log is not at {real.LOG}")
    start = time.perf_counter()
    incs = load()
    print(f"imported {len(incs):,} incidents in {time.perf_counter() - start:.1f} s")
    at = max(i.updated_at for i in incs)
    days = kpi.series(datetime(2016, 3, 1, tzinfo=UTC), at, every="day")
    calls = {
        "mtta (business time)": lambda: kpi.mtta(incs, at=at, calendar=CAL),
        "mttr by priority (business time)": lambda: kpi.mttr(
            incs, at=at, by="priority", calendar=CAL
        ),
        "first-contact resolution": lambda: kpi.first_contact_resolution(incs, at=at),
        "reopen rate by group": lambda: kpi.reopen_rate(incs, at=at, by="assignment_group"),
        "reassignment": lambda: kpi.reassignment(incs, at=at),
        "ageing at 1 June 2016": lambda: kpi.ageing(incs, at=datetime(2016, 6, 1, tzinfo=UTC)),
        f"backlog, {len(days)} days": lambda: kpi.backlog(incs, instants=days),
        f"backlog by group, {len(days)} days": lambda: kpi.backlog(
            incs, instants=days, by="assignment_group"
        ),
        "SLA compliance, 2 SLAs by priority": lambda: kpi.sla_compliance(
            incs, SLAS, at=at, by="priority"
        ),
        "top recurring categories": lambda: kpi.top_recurring(
            incs, at=at, by="category", window=None
        ),
    }
    results = {}
    for name, call in calls.items():
        seconds, _ = best_of(3, call)
        results[name] = round(seconds, 3)
        print(f"{name:40s} {seconds:6.2f} s")
    print(json.dumps({"incidents": len(incs), "seconds": results}))


if __name__ == "__main__":
    main()
