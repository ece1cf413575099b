"""Store throughput: adds, saves and gets per store, against raw driver code doing the same.

For each store (in memory; SQLite in WAL mode on a file; PostgreSQL over a unix socket, on
a throwaway server started here): ``add`` commits a new incident (one event), ``save``
loads an incident, applies one verb and commits it, ``get`` loads and rebuilds one. The
raw baselines run the same SQL statements with ``sqlite3`` / ``psycopg`` directly, with
the rows already serialized: the difference is itsmcore's own cost (serialization,
replay, version checks, the unit of work).

    python benchmarks/bench_storage.py            # 3,000 incidents per store, best of 3 rounds
    python benchmarks/bench_storage.py --n 500
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from itsmcore import Incident
from itsmcore.repository import kind_map
from itsmcore.storage import InMemoryStore, PostgresStore, SQLiteStore
from itsmcore.storage._core import encode

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from postgres_server import postgres_server  # the tests' throwaway server

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)


def incident(k: int) -> Incident:
    return Incident.open(
        id=f"INC{k:06d}", title="Printer jam", caller="mia", impact=2, urgency=2,
        at=T0 + timedelta(seconds=k), by="desk",
    )  # fmt: skip


def timed(n: int, **ops: Callable[[], Any]) -> dict[str, float]:
    """Per operation: throughput (wall clock) and this process's CPU time per call (µs).

    The CPU time is the client's own work (itsmcore's or the raw code's, and the driver's);
    the rest of the wall time is the server's and the trip to it. On a server faster than
    this one the wall times approach the CPU times.
    """
    out = {}
    for name, fn in ops.items():
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        out[name] = n / (time.perf_counter() - wall)
        out[f"{name}_cpu_us"] = (time.process_time() - cpu) / n * 1e6
    return out


def measure_store(store: Any, n: int) -> dict[str, float]:
    records = [incident(k) for k in range(n)]

    def add_all() -> None:
        for record in records:
            with store.unit_of_work() as uow:
                uow.incidents.add(record)
                uow.commit()

    def save_all() -> None:
        for record in records:
            with store.unit_of_work() as uow:
                loaded = uow.incidents.get(record.id)
                uow.incidents.save(loaded.start(at=T0 + timedelta(days=1), by="sam"))
                uow.commit()

    def get_all() -> None:
        with store.unit_of_work() as uow:
            for record in records:
                uow.incidents.get(record.id)

    return timed(n, add=add_all, save=save_all, get=get_all)


# --------------------------------------------------------------------------- raw baselines

_INSERT_EVENT = (
    "INSERT INTO itsm_events (kind, record_id, version, type, schema_version, at, by, data)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
INCIDENTS = kind_map(None)["incidents"]
_NAMES = sorted(INCIDENTS.column_names)
# The kind's own declared column names (no user input): the statement the store issues.
_INSERT_RECORD = (
    f"INSERT INTO itsm_records (kind, id, version, {', '.join(_NAMES)}) VALUES "  # noqa: S608
    + ", ".join(["({p}"] + ["{p}"] * (len(_NAMES) + 2))
    + ")"
)


def rows_for(n: int) -> list[tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]]:
    """Pre-serialized (opening event, record row, start event) per incident."""
    out = []
    for k in range(n):
        record = incident(k)
        started = record.start(at=T0 + timedelta(days=1), by="sam")
        values = INCIDENTS.values(record)  # the kind's indexed columns, as the store keeps them
        out.append(
            (
                ("incidents", record.id, *encode(1, record.history[0])[:6]),
                ("incidents", record.id, 1, *(values[name] for name in _NAMES)),
                ("incidents", record.id, *encode(2, started.history[1])[:6]),
            )
        )
    return out


def measure_raw_sqlite(path: str, n: int) -> dict[str, float]:
    SQLiteStore(path)  # the same schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    rows = rows_for(n)
    ev, rec = _INSERT_EVENT.format(p="?"), _INSERT_RECORD.format(p="?")

    def add_all() -> None:
        for opening, record, _ in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(ev, opening)
            conn.execute(rec, record)
            conn.execute("COMMIT")

    def save_all() -> None:
        for _, record, start in rows:
            conn.execute(
                "SELECT version, type, schema_version, at, by, data FROM itsm_events"
                " WHERE kind = ? AND record_id = ? ORDER BY version", ("incidents", record[1]),
            ).fetchall()  # fmt: skip
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "SELECT version FROM itsm_records WHERE kind = ? AND id = ?",
                ("incidents", record[1]),
            ).fetchone()
            conn.execute(ev, start)
            conn.execute(
                "UPDATE itsm_records SET version = 2, state = 'in_progress'"
                " WHERE kind = ? AND id = ?",
                ("incidents", record[1]),
            )
            conn.execute("COMMIT")

    def get_all() -> None:
        for _, record, _ in rows:
            conn.execute(
                "SELECT version, type, schema_version, at, by, data FROM itsm_events"
                " WHERE kind = ? AND record_id = ? ORDER BY version", ("incidents", record[1]),
            ).fetchall()  # fmt: skip

    return timed(n, add=add_all, save=save_all, get=get_all)


def measure_raw_postgres(dsn: str, n: int) -> dict[str, float]:
    import psycopg  # noqa: PLC0415

    PostgresStore(dsn)  # the same schema
    conn = psycopg.connect(dsn, autocommit=True)
    rows = rows_for(n)
    ev = _INSERT_EVENT.format(p="%s").replace("%s)", "%s::jsonb)")
    rec = _INSERT_RECORD.format(p="%s")

    def add_all() -> None:
        for opening, record, _ in rows:
            with conn.transaction():
                conn.execute(ev, opening)
                conn.execute(rec, record)

    def save_all() -> None:
        for _, record, start in rows:
            conn.execute(
                "SELECT version, type, schema_version, at, by, data::text FROM itsm_events"
                " WHERE kind = %s AND record_id = %s ORDER BY version", ("incidents", record[1]),
            ).fetchall()  # fmt: skip
            with conn.transaction():
                conn.execute(
                    "SELECT version FROM itsm_records WHERE kind = %s AND id = %s FOR UPDATE",
                    ("incidents", record[1]),
                ).fetchone()
                conn.execute(ev, start)
                conn.execute(
                    "UPDATE itsm_records SET version = 2, state = 'in_progress'"
                    " WHERE kind = %s AND id = %s", ("incidents", record[1]),
                )  # fmt: skip

    def get_all() -> None:
        for _, record, _ in rows:
            conn.execute(
                "SELECT version, type, schema_version, at, by, data::text FROM itsm_events"
                " WHERE kind = %s AND record_id = %s ORDER BY version", ("incidents", record[1]),
            ).fetchall()  # fmt: skip

    result = timed(n, add=add_all, save=save_all, get=get_all)
    conn.close()
    return result


def fresh_database(dsn: str, name: str) -> str:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return dsn.replace("dbname=postgres", f"dbname={name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    n = args.n
    results: dict[str, dict[str, float]] = {}

    def keep_best(name: str, rates: dict[str, float]) -> None:
        best = results.setdefault(name, rates)
        for op, rate in rates.items():
            best[op] = min(best[op], rate) if op.endswith("_cpu_us") else max(best[op], rate)

    # Every round runs on fresh stores and databases, interleaving each store with its raw
    # baseline, so a noisy moment of the machine spoils one round rather than one side.
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as dsn:
        for k in range(args.rounds):
            keep_best("in memory", measure_store(InMemoryStore(), n))
            path = Path(tmp) / f"store{k}.sqlite3"
            keep_best("SQLite (WAL)", measure_store(SQLiteStore(path), n))
            keep_best("raw sqlite3", measure_raw_sqlite(str(Path(tmp) / f"raw{k}.sqlite3"), n))
            store = PostgresStore(fresh_database(dsn, f"bench_store{k}"))
            keep_best("PostgreSQL (unix socket)", measure_store(store, n))
            store.close()
            raw = fresh_database(dsn, f"bench_raw{k}")
            keep_best("raw psycopg", measure_raw_postgres(raw, n))
    print(f"{n:,} incidents per store; operations per second, best of {args.rounds} rounds\n")
    print("| store | add | save | get |\n|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['add']:,.0f} | {r['save']:,.0f} | {r['get']:,.0f} |")
    print("\n| overhead (raw / store throughput) | add | save | get |\n|---|---:|---:|---:|")
    for store, raw in (
        ("SQLite (WAL)", "raw sqlite3"),
        ("PostgreSQL (unix socket)", "raw psycopg"),
    ):
        ratios = [results[raw][op] / results[store][op] for op in ("add", "save", "get")]
        print(f"| {store} | " + " | ".join(f"{x:.2f} x" for x in ratios) + " |")
    print("\n| client CPU per operation (µs) | add | save | get |\n|---|---:|---:|---:|")
    for name, r in results.items():
        cpu = [r[f"{op}_cpu_us"] for op in ("add", "save", "get")]
        print(f"| {name} | " + " | ".join(f"{x:.1f}" for x in cpu) + " |")
    if args.json:  # compare.py reads the *_per_s figures: wall, and per second of client CPU
        ops = ("add", "save", "get")
        payload = {
            "stores": results,
            "ops_per_s": {f"{name} {op}": r[op] for name, r in results.items() for op in ops},
            "client_cpu_ops_per_s": {
                f"{name} {op} (client CPU)": 1e6 / r[f"{op}_cpu_us"]
                for name, r in results.items()
                for op in ops
            },
        }
        Path(args.json).write_text(json.dumps(payload, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
