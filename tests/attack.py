"""The attack harness: fuzzing, races and kill -9 against the public API and both SQL stores.

Each attack returns its figures (inputs tried, failures, events lost, crashes survived). The
tests (test_attack.py) run them at a small budget on every CI run; run them large here:

    python tests/attack.py --budget large             # all attacks, figures as a table
    python tests/attack.py --budget large --only kill # one of: fuzz, race, kill

PostgreSQL attacks start a private server (initdb/pg_ctl) and need no configuration.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from itsmcore import (
    BusinessCalendar,
    ConcurrencyError,
    Incident,
    ItsmError,
    Priority,
    PriorityMatrix,
    SLADefinition,
    StoreBusyError,
    TransientError,
)
from itsmcore.knowledge import KnowledgeArticle, suggest
from itsmcore.storage import InMemoryStore, PostgresStore, SQLiteStore
from postgres_server import PostgresServer

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
BUDGETS = {
    "small": {"fuzz": 200, "threads": 4, "processes": 2, "updates": 15, "kills": 3},
    "large": {"fuzz": 20_000, "threads": 8, "processes": 8, "updates": 200, "kills": 100},
}

# --------------------------------------------------------------------------- fuzzing

# Values that have broken libraries of this kind: wrong types, the edges of the datetime
# range, naive datetimes, text no database keeps, huge numbers.
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "\ud800", "x" * 300, "Europe", "P1", "1 - High", "new"]),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),  # naive
    st.sampled_from([datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)]),
    st.timedeltas(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
OFFICE = BusinessCalendar.weekly({"mon-fri": "09:00-17:00"}, tz="Europe/Berlin")
TARGETS = {p: timedelta(hours=4) for p in Priority}


MEMORY = InMemoryStore()


def _find(**filters: Any) -> object:
    with MEMORY.unit_of_work() as uow:
        return uow.incidents.find(**filters)


def _get(record_id: Any) -> object:
    with MEMORY.unit_of_work() as uow:
        return uow.incidents.get(record_id)


def _article() -> KnowledgeArticle:
    return KnowledgeArticle.open(id="KB1", title="VPN cannot connect", keywords=["vpn"],
                                 body="Renew the certificate.", at=T0, by="amy")  # fmt: skip


@cache
def _searchable(name: str) -> InMemoryStore | SQLiteStore:
    """A store holding one published article, so every search runs its full query."""
    store = InMemoryStore() if name == "memory" else SQLiteStore(Path(tempfile.mkdtemp()) / "kb.db")
    with store.unit_of_work() as uow:
        uow.knowledge.add(_article().submit(at=T0, by="amy").publish(at=T0, by="bob"))
        uow.commit()
    return store


def _search(name: str, text: Any = "vpn cannot connect", **options: Any) -> object:
    with _searchable(name).unit_of_work() as uow:
        return uow.knowledge.search(text, **options)


def _suggest(value: Any) -> object:
    with _searchable("memory").unit_of_work() as uow:
        return suggest(uow.knowledge, value)


def _incident() -> Incident:
    return Incident.open(id="INC1", title="Mail down", caller="mia", impact=2, urgency=2,
                         at=T0, by="desk").start(at=T0, by="sam")  # fmt: skip


# name: call with one hostile value in one argument (the others valid)
FUZZ_CALLS: dict[str, Callable[[Any], object]] = {
    "calendar.elapsed": lambda v: OFFICE.elapsed(T0, v),
    "calendar.add(start)": lambda v: OFFICE.add(v, timedelta(hours=1)),
    "calendar.add(duration)": lambda v: OFFICE.add(T0, v),
    "calendar.is_open": OFFICE.is_open,
    "calendar.next_open": OFFICE.next_open,
    "calendar.next_close": OFFICE.next_close,
    "calendar.weekly(hours)": lambda v: BusinessCalendar.weekly({"mon": v}, tz="UTC"),
    "calendar.weekly(tz)": lambda v: BusinessCalendar.weekly({"mon": "09:00-17:00"}, tz=v),
    "calendar.weekly(holidays)": lambda v: BusinessCalendar.weekly(
        {"mon": "09:00-17:00"}, tz="UTC", holidays=v
    ),
    "sla.resolution(targets)": lambda v: SLADefinition.resolution(dict.fromkeys(Priority, v)),
    "sla.resolution(warnings)": lambda v: SLADefinition.resolution(TARGETS, warnings=v),
    "sla.resolution(reopen)": lambda v: SLADefinition.resolution(TARGETS, reopen=v),
    "sla.evaluate(at)": lambda v: SLADefinition.resolution(TARGETS, OFFICE).evaluate(
        _incident(), at=v
    ),
    "sla.next_event_at(at)": lambda v: SLADefinition.resolution(TARGETS).next_event_at(
        _incident(), at=v
    ),
    "incident.open(title)": lambda v: Incident.open(
        id="INC1", title=v, caller="mia", impact=1, urgency=1, at=T0, by="desk"
    ),
    "incident.open(impact)": lambda v: Incident.open(
        id="INC1", title="t", caller="mia", impact=v, urgency=1, at=T0, by="desk"
    ),
    "incident.open(at)": lambda v: Incident.open(
        id="INC1", title="t", caller="mia", impact=1, urgency=1, at=v, by="desk"
    ),
    "incident.hold(reason)": lambda v: _incident().hold(reason=v, at=T0, by="sam"),
    "incident.assign(group)": lambda v: _incident().assign(group=v, at=T0, by="sam"),
    "incident.comment(from_caller)": lambda v: _incident().comment(
        text="hi", from_caller=v, at=T0, by="mia"
    ),
    "incident.update(ci)": lambda v: _incident().update(ci=v, at=T0, by="sam"),
    "incident.reprioritize(urgency)": lambda v: _incident().reprioritize(
        urgency=v, reason="r", at=T0, by="sam"
    ),
    "incident.resolve(code)": lambda v: _incident().resolve(code=v, notes="n", at=T0, by="s"),
    "incident.fire(data)": lambda v: _incident().fire("hold", reason=v, at=T0, by="sam"),
    "incident.verb(by)": lambda v: _incident().comment(text="hi", at=T0, by=v),
    "store.find(state)": lambda v: _find(state=v),
    "store.find(priority)": lambda v: _find(priority=v),
    "store.find(opened_from)": lambda v: _find(opened_from=v),
    "store.find(limit)": lambda v: _find(limit=v),
    "store.find(offset)": lambda v: _find(offset=v),
    "store.find(order_by)": lambda v: _find(order_by=v),
    "store.find(descending)": lambda v: _find(descending=v),
    "store.find(after)": lambda v: _find(after=v),
    "store.get(id)": _get,
    "store.search(text)": lambda v: _search("memory", v),
    "store.search(text) sqlite": lambda v: _search("sqlite", v),
    "store.search(limit)": lambda v: _search("memory", limit=v),
    "store.search(service)": lambda v: _search("sqlite", service=v),
    "knowledge.suggest": _suggest,
    "knowledge.open(keywords)": lambda v: KnowledgeArticle.open(
        id="KB1", title="t", body="b", keywords=v, at=T0, by="amy"
    ),
    "knowledge.submit(reviewer)": lambda v: _article().submit(reviewer=v, at=T0, by="amy"),
    "knowledge.publish(by)": lambda v: _article().submit(at=T0, by="amy").publish(at=T0, by=v),
    "priority.parse": Priority.parse,
    "matrix.priority": lambda v: PriorityMatrix.itil_default().priority(v, 1),
}


def fuzz(examples: int) -> dict[str, int]:
    """Every public call with hostile values: typed errors only, never a raw exception."""
    tried = 0
    raw: list[str] = []

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(name=st.sampled_from(sorted(FUZZ_CALLS)), value=HOSTILE)
    def attack(name: str, value: object) -> None:
        nonlocal tried
        tried += 1
        try:
            FUZZ_CALLS[name](value)
        except ItsmError:
            pass
        except Exception as exc:  # noqa: BLE001 - that is what the attack looks for
            raw.append(f"{name}({value!r:.60}): {type(exc).__name__}: {exc!s:.100}")

    attack()
    return {"inputs tried": tried, "raw exceptions": len(raw), "examples": raw[:5]}  # type: ignore[dict-item]


# --------------------------------------------------------------------------- stores


@contextmanager
def databases() -> Iterator[dict[str, str]]:
    """A SQLite path and a PostgreSQL DSN, both fresh, removed afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        server = PostgresServer()
        dsn = server.start()
        try:
            yield {"sqlite": str(Path(folder) / "attack.db"), "postgres": dsn}
        finally:
            server.stop()


def _store(target: str) -> SQLiteStore | PostgresStore:
    return PostgresStore(target) if target.startswith("host=") else SQLiteStore(target)


def _seed(target: str, ids: list[str]) -> None:
    store = _store(target)
    with store.unit_of_work() as uow:
        for record_id in ids:
            uow.incidents.add(Incident.open(id=record_id, title="t", caller="c", impact=2,
                                            urgency=2, at=T0, by="seed"))  # fmt: skip
        uow.commit()
    store.close()


def _update_loop(target: str, name: str, updates: int, ids: list[str], out: Any) -> None:
    """Read-modify-write ``updates`` times, each on one or two random records, with retries."""
    store = _store(target)
    rnd = random.Random(name)
    attempts = conflicts = 0
    done = 0
    while done < updates:
        chosen = rnd.sample(ids, k=rnd.choice([1, 2]))
        attempts += 1
        try:
            with store.unit_of_work() as uow:
                for record_id in chosen:
                    record = uow.incidents.get(record_id)
                    uow.incidents.save(record.comment(text=f"{name}:{done}", at=T0, by=name))
                uow.commit()
            done += 1
        except TransientError:
            conflicts += 1
    store.close()
    out.put((name, attempts, conflicts))


def race(target: str, threads: int, processes: int, updates: int) -> dict[str, int]:
    """Threads and processes updating shared records; count what the histories kept."""
    ids = [f"INC{k}" for k in range(4)]
    _seed(target, ids)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers: list[Any] = [
        threading.Thread(target=_update_loop, args=(target, f"t{k}", updates, ids, queue))
        for k in range(threads)
    ]
    workers += [
        context.Process(target=_update_loop, args=(target, f"p{k}", updates, ids, queue))
        for k in range(processes)
    ]
    for w in workers:
        w.start()
    results = [queue.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=600)
    store = _store(target)
    duplicated = 0
    texts: list[str] = []
    with store.unit_of_work() as uow:
        for record_id in ids:
            record = uow.incidents.get(record_id)  # loads whole: no gap, versions in step
            mine = [e.text for e in record.history[1:]]  # type: ignore[attr-defined]
            duplicated += len(mine) - len(set(mine))
            texts += mine
    store.close()
    # Each committed unit wrote one comment per record it touched, all with one text.
    written = len(texts)
    unique = len(set(texts))
    attempts = sum(a for _, a, _ in results)
    return {
        "workers": len(workers),
        "attempts": attempts,
        "lost races (retried)": sum(c for _, _, c in results),
        "units committed": len(workers) * updates,
        "events written": written,
        "units in the histories": unique,
        "units lost": len(workers) * updates - unique,
        "events duplicated": duplicated,
    }


def _crash_loop(target: str, name: str, ids: list[str], ready: Any, after: int) -> None:
    """Update forever (until killed); say when ``after`` units have committed."""
    store = _store(target)
    rnd = random.Random(name)
    k = 0
    while True:
        if k == after:
            ready.set()
        try:
            with store.unit_of_work() as uow:
                for record_id in rnd.sample(ids, k=rnd.choice([1, 2])):
                    record = uow.incidents.get(record_id)
                    record = record.comment(text=f"{name}:{k}", at=T0, by=name)
                    uow.incidents.save(record)
                uow.commit()
        except (ConcurrencyError, StoreBusyError):
            pass
        k += 1


def kill(target: str, kills: int) -> dict[str, int]:
    """kill -9 writers at random moments; after each, every record must load whole."""
    ids = [f"INC{k}" for k in range(3)]
    _seed(target, ids)
    context = multiprocessing.get_context("spawn")
    rnd = random.Random(7)
    survived = 0
    for k in range(kills):
        # The moment: after a random number of units, while both writers keep writing.
        ready = context.Event()
        after = rnd.randint(1, 30)
        workers = [
            context.Process(target=_crash_loop, args=(target, f"k{k}w{w}", ids, ready, after))
            for w in range(2)
        ]
        for w in workers:
            w.start()
        if not ready.wait(timeout=120):
            msg = "the writers never got going"
            raise RuntimeError(msg)
        for w in workers:
            os.kill(w.pid, signal.SIGKILL)  # type: ignore[arg-type]
            w.join(timeout=60)
        store = _store(target)
        with store.unit_of_work() as uow:
            for record_id in ids:
                record = uow.incidents.get(record_id)  # whole: loads, no gap, no torn unit
                texts = [e.text for e in record.history[1:]]  # type: ignore[attr-defined]
                assert len(texts) == len(set(texts)), "an event was written twice"
            assert {r.id for r in uow.incidents.find(state="in_progress")} <= set(ids)
            assert len(uow.incidents.find(state="new")) == len(ids)
        store.close()
        survived += 1
    return {"kills": kills, "crashes survived": survived}


# --------------------------------------------------------------------------- command line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    parser.add_argument("--only", choices=["fuzz", "race", "kill"])
    args = parser.parse_args()
    budget = BUDGETS[args.budget]
    rows: list[tuple[str, dict[str, Any]]] = []
    if args.only in (None, "fuzz"):
        rows.append(("fuzz: public API", fuzz(budget["fuzz"])))
    if args.only in (None, "race", "kill"):
        with databases() as places:
            for name, target in places.items():
                if args.only in (None, "race"):
                    figures = race(target, budget["threads"], budget["processes"],
                                   budget["updates"])  # fmt: skip
                    rows.append((f"race: {name}", figures))
            with databases() as fresh:
                for name, target in fresh.items():
                    if args.only in (None, "kill"):
                        rows.append((f"kill -9: {name}", kill(target, budget["kills"])))
    for name, figures in rows:
        shown = ", ".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}"
                          for k, v in figures.items())  # fmt: skip
        print(f"| {name} | {shown} |")  # noqa: T201 - the harness reports its figures


if __name__ == "__main__":
    main()
