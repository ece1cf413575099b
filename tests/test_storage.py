"""Every store runs the shared contract; SQLite also across processes and through crashes."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from itsmcore import Incident
from itsmcore._time import to_us
from itsmcore.errors import (
    ConcurrencyError,
    CorruptionError,
    StoreBusyError,
    TransientError,
    ValidationError,
)
from itsmcore.events import Event
from itsmcore.repository import RecordKind, kinds
from itsmcore.storage import InMemoryStore, PostgresStore, SQLiteStore
from itsmcore.storage._core import EventRow, decode, encode
from itsmcore.testing import T0, RecordKindContract, RepositoryContract
from postgres_server import REQUIRED

INCIDENTS = next(k for k in kinds() if k.name == "incidents")


def _opened(record_id: str, **fields: Any) -> Incident:
    spec: dict[str, Any] = {
        "id": record_id, "title": "Mail down", "caller": "mia", "impact": 2, "urgency": 2,
        "at": T0, "by": "desk",
    } | fields  # fmt: skip
    return Incident.open(**spec)


class InMemory:
    def make_store(self, tmp_path: Path, kinds: Any = None) -> Any:
        return InMemoryStore(kinds=kinds)

    def corrupt_event(self, store: Any, kind: str, record_id: str, version: int) -> None:
        rows = store._events[kind, record_id]
        rows[version - 1] = rows[version - 1]._replace(type="incident.teleported")

    def overwrite_event_data(
        self, store: Any, kind: str, record_id: str, version: int, data: str
    ) -> None:
        rows = store._events[kind, record_id]
        rows[version - 1] = rows[version - 1]._replace(data=data)

    def overwrite_column(
        self, store: Any, kind: str, record_id: str, column: str, value: object
    ) -> None:
        store._columns[kind, record_id][column] = value


class SQLite:
    def make_store(self, tmp_path: Path, kinds: Any = None) -> Any:
        return SQLiteStore(tmp_path / "desk.sqlite3", kinds=kinds)

    def corrupt_event(self, store: Any, kind: str, record_id: str, version: int) -> None:
        with sqlite3.connect(store.path) as conn:
            conn.execute(
                "UPDATE itsm_events SET type = 'incident.teleported' "
                "WHERE kind = ? AND record_id = ? AND version = ?",
                (kind, record_id, version),
            )

    def overwrite_event_data(
        self, store: Any, kind: str, record_id: str, version: int, data: str
    ) -> None:
        with sqlite3.connect(store.path) as conn:
            conn.execute(
                "UPDATE itsm_events SET data = ? WHERE kind = ? AND record_id = ? AND version = ?",
                (data, kind, record_id, version),
            )

    def overwrite_column(
        self, store: Any, kind: str, record_id: str, column: str, value: object
    ) -> None:
        with sqlite3.connect(store.path) as conn:
            conn.execute(
                f"UPDATE itsm_records SET {column} = ? WHERE kind = ? AND id = ?",
                (value, kind, record_id),
            )


class Postgres:
    @pytest.fixture(autouse=True)
    def _server(self, postgres_dsn: str) -> None:
        self.dsn = postgres_dsn

    def make_store(self, tmp_path: Path, kinds: Any = None) -> Any:
        import psycopg  # noqa: PLC0415

        name = f"itsm_{tmp_path.name.lower().replace('-', '_')[-40:]}_{os.getpid()}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        return PostgresStore(self.dsn.replace("dbname=postgres", f"dbname={name}"), kinds=kinds)

    def corrupt_event(self, store: Any, kind: str, record_id: str, version: int) -> None:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(store.dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE itsm_events SET type = 'incident.teleported' "
                "WHERE kind = %s AND record_id = %s AND version = %s",
                (kind, record_id, version),
            )

    def overwrite_event_data(
        self, store: Any, kind: str, record_id: str, version: int, data: str
    ) -> None:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(store.dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE itsm_events SET data = %s::jsonb "
                "WHERE kind = %s AND record_id = %s AND version = %s",
                (data, kind, record_id, version),
            )

    def overwrite_column(
        self, store: Any, kind: str, record_id: str, column: str, value: object
    ) -> None:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(store.dsn, autocommit=True) as conn:
            conn.execute(
                f"UPDATE itsm_records SET {column} = %s WHERE kind = %s AND id = %s",
                (value, kind, record_id),
            )


class TestInMemoryStore(InMemory, RepositoryContract):
    pass


class TestSQLiteStore(SQLite, RepositoryContract):
    pass


class TestPostgresStore(Postgres, RepositoryContract):
    pass


class TestIncidentsInMemory(InMemory, RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = INCIDENTS


class TestIncidentsInSQLite(SQLite, RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = INCIDENTS


class TestIncidentsInPostgres(Postgres, RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = INCIDENTS


def _open_store(target: str) -> Any:
    return PostgresStore(target) if target.startswith("host=") else SQLiteStore(target)


def _comment_many(target: str, name: str, count: int) -> None:
    store = _open_store(target)
    done = 0
    while done < count:
        with store.unit_of_work() as uow:
            record = uow.incidents.get("INC1")
            uow.incidents.save(record.comment(text=name, at=T0, by=name))
            try:
                uow.commit()
            except ConcurrencyError:
                continue
            done += 1


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives, for tests that need several processes: a path or a DSN."""
    if request.param == "sqlite":
        return str(tmp_path / "desk.sqlite3")
    return str(request.getfixturevalue("postgres_database"))


def test_processes_updating_one_record_lose_nothing(database: str) -> None:
    store = _open_store(database)
    with store.unit_of_work() as uow:
        uow.incidents.add(_opened("INC1"))
        uow.commit()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_comment_many, args=(database, f"p{k}", 8)) for k in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    with store.unit_of_work() as uow:
        history = uow.incidents.history("INC1")
    assert len(history) == 1 + 3 * 8
    assert sorted(e.by for e in history[1:]) == sorted(f"p{k}" for k in range(3) for _ in range(8))


def _die_mid_commit(target: str, ready: Any) -> None:
    """Write half a unit of work inside an open transaction, then get killed."""
    store = _open_store(target)
    uow = store.unit_of_work()
    uow.incidents.get("INC1")
    session = uow.session
    conn = session._conn
    conn.execute("BEGIN IMMEDIATE" if isinstance(store, SQLiteStore) else "BEGIN")
    conn.execute(
        "INSERT INTO itsm_events (kind, record_id, version, type, schema_version, at, by, data)"
        " VALUES ('incidents', 'INC1', 2, 'incident.started', 1, 0, 'doomed', '{}')"
    )
    conn.execute("UPDATE itsm_records SET version = 2 WHERE kind = 'incidents' AND id = 'INC1'")
    ready.set()
    signal.pause()  # killed here, mid-transaction


@pytest.mark.skipif(not hasattr(signal, "pause"), reason="needs POSIX signals")
def test_a_process_killed_mid_unit_of_work_leaves_the_last_commit(database: str) -> None:
    store = _open_store(database)
    with store.unit_of_work() as uow:
        uow.incidents.add(_opened("INC1"))
        uow.commit()
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_die_mid_commit, args=(database, ready))
    child.start()
    assert ready.wait(timeout=60)
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    with store.unit_of_work() as uow:
        assert uow.incidents.get("INC1").version == 1
        assert uow.incidents.find() == [uow.incidents.get("INC1")]
        uow.incidents.save(uow.incidents.get("INC1").start(at=T0, by="survivor"))
        uow.commit()  # the dead process's locks died with it
    with store.unit_of_work() as uow:
        assert uow.incidents.get("INC1").history[-1].by == "survivor"


@attrs.frozen(kw_only=True)
class _NoteAdded(Event):
    """A test event at schema version 2: ``text`` was called ``body`` in version 1."""

    type: ClassVar[str] = "test.note_added"
    schema_version: ClassVar[int] = 2
    text: str

    @classmethod
    def upcast(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        assert version == 1
        data = dict(data)
        data["text"] = data.pop("body")
        return data


@attrs.frozen(kw_only=True)
class _Stamped(Event):
    type: ClassVar[str] = "test.stamped"
    schema_version: ClassVar[int] = 3


def test_older_rows_stay_readable_through_an_upcast() -> None:
    old = EventRow(
        1, "test.note_added", 1, 0, "mia",
        json.dumps({"at": "2025-03-03T09:00:00+00:00", "by": "mia", "state": "new", "body": "hi"}),
    )  # fmt: skip
    event = decode("incidents", "INC1", old._replace(at=to_us(T0)))
    assert event == _NoteAdded(at=T0, by="mia", state="new", text="hi")
    current = encode(1, event)
    assert (current.schema_version, json.loads(current.data)["text"]) == (2, "hi")
    assert decode("incidents", "INC1", current) == event
    unreadable = EventRow(1, "test.stamped", 1, 0, "mia", '{"at": "2025-03-03T09:00:00+00:00"}')
    with pytest.raises(CorruptionError, match=r"version 1 of 'test\.stamped' cannot be read"):
        decode("incidents", "INC1", unreadable)
    with pytest.raises(CorruptionError, match="does not fit"):
        decode("incidents", "INC1", old._replace(schema_version=2))
    with pytest.raises(CorruptionError, match="not JSON"):
        decode("incidents", "INC1", old._replace(data="{oops"))


_OPENED = json.loads(encode(1, _opened("INC1").history[0]).data)


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({k: v for k, v in _OPENED.items() if k != "title"}, "title"),
        ({**_OPENED, "impact": "severe"}, "severe"),
        ({**_OPENED, "channel": 7}, "7 is not a str"),
        ({**_OPENED, "at": 1741000000}, "not an ISO datetime"),
        ({**_OPENED, "title": 42}, "42 is not a str"),
        ({**_OPENED, "priority_overridden": "no"}, "is not a bool"),
        ({**_OPENED, "at": "2025-03-03T09:00:00"}, "naive"),
        ([1, 2], "list"),
        (None, "NoneType"),
    ],
)
def test_rows_that_do_not_fit_their_event_are_typed_errors_naming_why(
    data: object, names: str
) -> None:
    row = EventRow(1, "incident.opened", 1, 0, "desk", json.dumps(data))
    where = r"incidents 'INC1', stored event 1: its data does not fit"
    with pytest.raises(CorruptionError, match=where) as e:
        decode("incidents", "INC1", row)
    assert names in str(e.value)


# --------------------------------------------------------------------------- store-specific


def test_sqlite_waiting_past_its_timeout_is_a_typed_retryable_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "desk.sqlite3", timeout=0.05)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        with store.unit_of_work() as uow:
            uow.incidents.add(_opened("INC1"))
            with pytest.raises(StoreBusyError, match="write lock") as err:
                uow.commit()
            assert isinstance(err.value, TransientError)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with store.unit_of_work() as uow:  # nothing was written, and the store works on
        uow.incidents.add(_opened("INC1"))
        uow.commit()
    with pytest.raises(ValidationError, match="timeout"):
        SQLiteStore(tmp_path / "other.sqlite3", timeout=-1)


def _swap_pairs(dsn: str, name: str, rounds: int, errors: list[BaseException]) -> None:
    """Save INC1 and INC2 together, in the order the name says, retrying lost races."""
    store = PostgresStore(dsn)
    order = ["INC1", "INC2"] if name.endswith("a") else ["INC2", "INC1"]
    done = 0
    while done < rounds:
        try:
            with store.unit_of_work() as uow:
                for record_id in order:
                    record = uow.incidents.get(record_id)
                    uow.incidents.save(record.comment(text=name, at=T0, by=name))
                uow.commit()
                done += 1
        except ConcurrencyError:
            continue
        except BaseException as exc:  # noqa: BLE001 - any other error fails the test
            errors.append(exc)
            return
    store.close()


def test_postgres_units_saving_overlapping_records_in_any_order_only_lose_races(
    postgres_database: str,
) -> None:
    import threading  # noqa: PLC0415

    store = PostgresStore(postgres_database)
    with store.unit_of_work() as uow:
        uow.incidents.add(_opened("INC1"))
        uow.incidents.add(_opened("INC2"))
        uow.commit()
    errors: list[BaseException] = []
    names = [f"t{k}{'ab'[k % 2]}" for k in range(6)]
    threads = [
        threading.Thread(target=_swap_pairs, args=(postgres_database, n, 15, errors)) for n in names
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []  # never a raw psycopg error (a deadlock used to escape as one)
    with store.unit_of_work() as uow:
        for record_id in ("INC1", "INC2"):
            history = uow.incidents.history(record_id)
            assert len(history) == 1 + 6 * 15  # every unit wrote both records, none lost
    store.close()


def test_postgres_after_a_server_restart_the_next_unit_of_work_works() -> None:
    from postgres_server import PostgresServer  # noqa: PLC0415

    try:
        server = PostgresServer()
        dsn = server.start()
    except Exception as exc:  # noqa: BLE001 - the same rule as the session fixture
        if REQUIRED:
            pytest.fail(f"PostgreSQL is required but: {exc!r}")
        pytest.skip(f"no PostgreSQL server could be started: {exc!r}")
    try:
        store = PostgresStore(dsn)
        with store.unit_of_work() as a, store.unit_of_work() as b:  # two pooled connections
            a.incidents.add(_opened("INC1"))
            a.commit()
            b.incidents.get("INC1")
        server.restart()
        for k in range(3):  # each pooled connection died; each unit of work still works
            with store.unit_of_work() as uow:
                record = uow.incidents.get("INC1")
                uow.incidents.save(record.comment(text=f"after {k}", at=T0, by="sam"))
                uow.commit()
        with store.unit_of_work() as uow:
            assert uow.incidents.get("INC1").version == 4
        store.close()
    finally:
        server.stop()


def _take_numbers(target: str, count: int, out: Any) -> None:
    store = _open_store(target)
    for _ in range(count):
        with store.unit_of_work() as uow:
            out.put(uow.incidents.new_id())


def test_record_numbers_are_unique_across_processes(database: str) -> None:
    _open_store(database).close()  # the schema, before the processes race to it
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=_take_numbers, args=(database, 20, out)) for _ in range(3)]
    for w in workers:
        w.start()
    numbers = [out.get(timeout=120) for _ in range(60)]
    for w in workers:
        w.join(timeout=120)
    assert sorted(numbers) == [f"INC{k:07d}" for k in range(1, 61)]


def test_find_takes_priorities_as_people_write_them_and_refuses_unknown_values(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "desk.sqlite3")
    with store.unit_of_work() as uow:
        uow.incidents.add(_opened("INC1", impact=1, urgency=1))
        uow.incidents.add(_opened("INC2", impact=1, urgency=2))
        uow.commit()
    with store.unit_of_work() as uow:
        find = uow.incidents.find
        assert [i.id for i in find(priority="P1")] == ["INC1"]
        assert [i.id for i in find(priority=["1 - Critical", "High"])] == ["INC1", "INC2"]
        with pytest.raises(ValidationError, match="unknown Priority 'P9'"):
            find(priority="P9")
        with pytest.raises(ValidationError, match="no incident workflow has a state 'open'"):
            find(state="open")


def _copy_event(database: str, source: str, version: int, target: str, to_version: int) -> None:
    """What a careless hand-made fix does: copy another record's event row, seal and all."""
    postgres = database.startswith("host=")
    mark = "%s" if postgres else "?"
    copy = (
        "INSERT INTO itsm_events (record_id, kind, version, type, schema_version, at, by, data,"
        f" seal) SELECT {mark}, kind, {mark}, type, schema_version, at, by, data, seal"
        f" FROM itsm_events WHERE record_id = {mark} AND version = {mark}"
    )
    bump = f"UPDATE itsm_records SET version = {mark} WHERE id = {mark}"
    if postgres:
        import psycopg  # noqa: PLC0415

        connection: Any = psycopg.connect(database, autocommit=True)
    else:
        connection = sqlite3.connect(database)
    with connection as conn:
        conn.execute(copy, (target, to_version, source, version))
        conn.execute(bump, (to_version, target))


def test_an_event_copied_from_another_record_is_found_on_load(database: str) -> None:
    """Every stored event row carries a seal made for its record and position: a row copied
    from another record (its data fitting, its time in order) no longer reads as this
    record's; the record it came from still loads."""
    store = _open_store(database)
    with store.unit_of_work() as uow:
        uow.incidents.add(_opened("INC1"))
        uow.incidents.add(_opened("INC2").comment(text="mine", at=T0, by="mia"))
        uow.commit()
    _copy_event(database, "INC2", 2, "INC1", 2)
    with store.unit_of_work() as uow:
        with pytest.raises(CorruptionError, match=r"INC1.*stored event 2: its seal does not"):
            uow.incidents.get("INC1")
        assert uow.incidents.get("INC2").history[-1].text == "mine"
        with pytest.raises(CorruptionError, match="INC1"):
            uow.incidents.find()


def test_stores_written_before_seals_are_sealed_when_opened(database: str) -> None:
    """A store of the schema before seals (SQLite 1, PostgreSQL 2) is upgraded in place when
    opened: its rows are sealed as they are, and load as before."""
    store = _open_store(database)
    record = _opened("INC1").start(at=T0, by="sam")
    with store.unit_of_work() as uow:
        uow.incidents.add(record)
        uow.commit()
    store.close()
    if database.startswith("host="):
        import psycopg  # noqa: PLC0415

        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("ALTER TABLE itsm_events DROP COLUMN seal")
            conn.execute("UPDATE itsm_meta SET value = '2' WHERE key = 'schema'")
    else:
        with sqlite3.connect(database) as conn:
            conn.execute("ALTER TABLE itsm_events DROP COLUMN seal")
            conn.execute("UPDATE itsm_meta SET value = '1' WHERE key = 'schema'")
    reopened = _open_store(database)
    with reopened.unit_of_work() as uow:
        assert uow.incidents.get("INC1") == record
        uow.incidents.save(record.comment(text="after", at=T0, by="mia"))
        uow.commit()
    with reopened.unit_of_work() as uow:
        assert uow.incidents.get("INC1").history[-1].text == "after"
    _copy_event(database, "INC1", 2, "INC1", 4)  # a row moved to another position
    with reopened.unit_of_work() as uow, pytest.raises(CorruptionError, match="seal"):
        uow.incidents.get("INC1")
