"""The floor of a SQLite ``get``: the tightest hand-written read of an incident, beside the store.

Three sides on the same rows, alternating in one process, each the best of ``--rounds``
(client CPU per read, ``time.process_time``): the raw driver's ``SELECT ... fetchall()`` of
an incident's event rows (``bench_storage.py``'s raw baseline); a hand-written read that
knows the two event types of the benchmark — the same ``SELECT``, ``orjson.loads`` of each
row's data, the time parsed with ``datetime.fromisoformat``, the event built by its class
(its own converters and validators) and the record by ``Incident.replay`` — checking no seal,
gap or time; and ``SQLiteStore``'s ``get``. The floor's records are checked equal to the
store's before timing.

    python benchmarks/floor_get.py --n 3000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from itsmcore import Incident
from itsmcore.incident import IncidentOpened, IncidentStarted
from itsmcore.storage import SQLiteStore

sys.path.insert(0, str(Path(__file__).parent))
from bench_storage import T0, incident

_SELECT = (
    "SELECT version, type, schema_version, at, by, data FROM itsm_events"
    " WHERE kind = ? AND record_id = ? ORDER BY version"
)
_CLASSES = {"incident.opened": IncidentOpened, "incident.started": IncidentStarted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.sqlite3"
        store = SQLiteStore(path)
        ids = []
        for k in range(args.n):
            record = incident(k)
            with store.unit_of_work() as uow:
                uow.incidents.add(record.start(at=T0 + timedelta(days=1), by="sam"))
                uow.commit()
            ids.append(record.id)
        conn = sqlite3.connect(path, isolation_level=None)

        def raw() -> list[Any]:
            return [conn.execute(_SELECT, ("incidents", i)).fetchall() for i in ids]

        def floor() -> list[Incident]:
            out = []
            for i in ids:
                events = []
                for _, kind, _, _, _, data in conn.execute(_SELECT, ("incidents", i)):
                    fields = orjson.loads(data)
                    fields["at"] = datetime.fromisoformat(fields["at"])
                    events.append(_CLASSES[kind](**fields))
                out.append(Incident.replay(events))
            return out

        def library() -> list[Incident]:
            with store.unit_of_work() as uow:
                return [uow.incidents.get(i) for i in ids]

        assert floor() == library()
        sides: dict[str, Callable[[], object]] = {"raw": raw, "floor": floor, "itsmcore": library}
        best = dict.fromkeys(sides, float("inf"))
        for _ in range(args.rounds):
            for name, fn in sides.items():
                began = time.process_time()
                fn()
                best[name] = min(best[name], (time.process_time() - began) / args.n)
        conn.close()
    print(f"{args.n:,} incidents of two events, client CPU per read, best of {args.rounds}\n")
    print("| side | µs a read | ratio to raw |\n|---|---:|---:|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds * 1e6:.1f} | {seconds / best['raw']:.2f} |")
    if args.json:
        rates = {f"{name} get (client CPU)": 1 / s for name, s in best.items()}
        Path(args.json).write_text(json.dumps({"evaluations_per_s": rates}), encoding="utf-8")


if __name__ == "__main__":
    main()
