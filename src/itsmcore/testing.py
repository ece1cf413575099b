"""Test helpers for applications and store implementers (needs pytest and hypothesis).

- :class:`RepositoryContract`: the behaviour every store must have. Subclass it in a pytest
  module, provide ``make_store`` and ``corrupt_event``, and the contract's tests run against
  your store (the library's own in-memory, SQLite and PostgreSQL stores all do).
- :func:`incidents`: a hypothesis strategy of valid incidents with random histories.
- :func:`ticking`: a ``ManualClock`` that advances a step every time it is read.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itsmcore.clock import ManualClock
from itsmcore.errors import ConcurrencyError, InvalidTransitionError, NotFoundError, ValidationError
from itsmcore.incident import Incident
from itsmcore.repository import kinds

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


__all__ = ["RepositoryContract", "incidents", "ticking"]

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)


class _TickingClock(ManualClock):
    step: timedelta = timedelta(minutes=1)

    def now(self) -> datetime:
        current = super().now()
        self.advance(self.step)
        return current


def ticking(start: datetime = T0, step: timedelta = timedelta(minutes=1)) -> ManualClock:
    """A clock that returns ``start``, then ``start + step``, … on successive reads."""
    clock = _TickingClock(start)
    clock.step = step
    return clock


_GROUPS = ("service-desk", "network", "database")
_VERBS = ("assign", "start", "hold", "resume", "reprioritize", "comment", "resolve", "reopen")


def _act(record: Incident, verb: str, at: datetime, pick: Callable[[Any], Any]) -> Incident:
    if verb == "assign":
        return record.assign(group=pick(st.sampled_from(_GROUPS)), at=at, by="desk")
    if verb == "hold":
        return record.hold(
            reason=pick(st.sampled_from(["awaiting_caller", "awaiting_vendor"])), at=at, by="sam"
        )
    if verb == "reprioritize":
        return record.reprioritize(urgency=pick(st.integers(1, 3)), reason="scope", at=at, by="sam")
    if verb == "comment":
        return record.comment(text="update", from_caller=pick(st.booleans()), at=at, by="mia")
    if verb == "resolve":
        return record.resolve(code="solution_provided", notes="fixed", at=at, by="sam")
    if verb == "reopen":
        return record.reopen(reason="back", at=at, by="mia")
    return getattr(record, verb)(at=at, by="sam")  # type: ignore[no-any-return]


@st.composite
def incidents(
    draw: st.DrawFn, ids: st.SearchStrategy[str] | None = None, max_events: int = 10
) -> Incident:
    """Valid incidents: an opening with random fields, then random possible verbs."""
    record_id = draw(ids if ids is not None else st.from_regex(r"INC[0-9]{4}", fullmatch=True))
    at = T0 + timedelta(minutes=draw(st.integers(0, 60 * 24 * 90)))
    record = Incident.open(
        id=record_id,
        title=draw(st.sampled_from(["VPN down", "Printer jam", "Mail slow"])),
        caller=draw(st.sampled_from(["mia", "kim", "lee"])),
        impact=draw(st.integers(1, 3)),
        urgency=draw(st.integers(1, 3)),
        service=draw(st.none() | st.sampled_from(["mail", "vpn"])),
        ci=draw(st.none() | st.sampled_from(["srv-1", "srv-2"])),
        at=at,
        by="desk",
    )
    for _ in range(draw(st.integers(0, max_events))):
        at += timedelta(minutes=draw(st.integers(0, 600)))
        try:
            record = _act(record, draw(st.sampled_from(_VERBS)), at, draw)
        except InvalidTransitionError:
            continue
    return record


def _opened(record_id: str, **fields: Any) -> Incident:
    spec: dict[str, Any] = {
        "id": record_id, "title": "Mail down", "caller": "mia", "impact": 2, "urgency": 2,
        "at": T0, "by": "desk",
    } | fields  # fmt: skip
    return Incident.open(**spec)


class RepositoryContract:
    """The behaviour every store shares. Subclass, implement the two hooks, run pytest."""

    def make_store(self, tmp_path: Path) -> Any:
        """A new, empty store."""
        raise NotImplementedError

    def corrupt_event(self, store: Any, record_id: str, version: int) -> None:
        """Overwrite a stored incident event's type with one no release knows."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Any:
        return self.make_store(tmp_path)

    # ----------------------------------------------------------------------- basics

    def test_added_records_come_back_equal(self, store: Any) -> None:
        record = _opened("INC1").assign(group="network", assignee="sam", at=T0, by="desk")
        with store.unit_of_work() as uow:
            uow.incidents.add(record)
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.incidents.get("INC1") == record
            assert uow.incidents.history("INC1") == record.history

    def test_unknown_ids_are_not_found(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            with pytest.raises(NotFoundError, match="INC404"):
                uow.incidents.get("INC404")
            with pytest.raises(KeyError):
                uow.incidents.history("INC404")

    def test_nothing_is_written_without_commit(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.incidents.add(_opened("INC1"))
        with pytest.raises(RuntimeError), store.unit_of_work() as uow:
            uow.incidents.add(_opened("INC2"))
            raise RuntimeError
        with store.unit_of_work() as uow:
            assert uow.incidents.find() == []

    def test_saves_append_events_and_keep_history(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.incidents.add(_opened("INC1"))
            uow.commit()
        with store.unit_of_work() as uow:
            record = uow.incidents.get("INC1").start(at=T0, by="sam")
            uow.incidents.save(record)
            uow.incidents.save(record.hold(reason="awaiting_vendor", at=T0, by="sam"))
            uow.commit()
            later = uow.incidents.get("INC1").resume(at=T0, by="sam")
            uow.incidents.save(later)  # committing again in the same unit of work
            uow.commit()
        with store.unit_of_work() as uow:
            stored = uow.incidents.get("INC1")
        assert stored == later
        assert stored.version == 4
        assert [e.type for e in stored.history] == [
            "incident.opened", "incident.started", "incident.held", "incident.resumed",
        ]  # fmt: skip

    # ----------------------------------------------------------------------- concurrency

    def test_a_stale_save_raises_and_writes_nothing_of_its_unit_of_work(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.incidents.add(_opened("INC1"))
            uow.incidents.add(_opened("INC2"))
            uow.commit()
        with store.unit_of_work() as first, store.unit_of_work() as second:
            a = first.incidents.get("INC1")
            b = second.incidents.get("INC1")
            first.incidents.save(a.start(at=T0, by="sam"))
            first.commit()
            second.incidents.save(second.incidents.get("INC2").start(at=T0, by="kim"))
            second.incidents.save(b.cancel(reason="duplicate", at=T0, by="kim"))
            with pytest.raises(ConcurrencyError) as err:
                second.commit()
        assert (err.value.record_id, err.value.expected, err.value.actual) == ("INC1", 1, 2)
        with store.unit_of_work() as uow:
            assert uow.incidents.get("INC1").state == "in_progress"
            assert uow.incidents.get("INC2").version == 1  # the other save did not land either

    def test_adding_an_existing_id_is_a_conflict(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.incidents.add(_opened("INC1"))
            uow.commit()
        with store.unit_of_work() as uow:
            uow.incidents.add(_opened("INC1", title="Another"))
            with pytest.raises(ConcurrencyError) as err:
                uow.commit()
        assert (err.value.expected, err.value.actual) == (0, 1)

    def test_retrying_on_conflict_converges_across_threads(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.incidents.add(_opened("INC1"))
            uow.commit()
        per_thread, threads = 5, 4
        errors: list[BaseException] = []

        def worker(name: str) -> None:
            try:
                for _ in range(per_thread):
                    while True:
                        with store.unit_of_work() as uow:
                            record = uow.incidents.get("INC1")
                            uow.incidents.save(record.comment(text=name, at=T0, by=name))
                            try:
                                uow.commit()
                                break
                            except ConcurrencyError:
                                continue
            except BaseException as exc:
                errors.append(exc)

        pool = [threading.Thread(target=worker, args=(f"t{k}",)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert errors == []
        with store.unit_of_work() as uow:
            history = uow.incidents.history("INC1")
        assert len(history) == 1 + per_thread * threads  # no gaps, nothing lost
        assert sorted(e.by for e in history[1:]) == sorted(
            f"t{k}" for k in range(threads) for _ in range(per_thread)
        )

    # ----------------------------------------------------------------------- bad input

    def test_bad_input_is_refused(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            with pytest.raises(ValidationError, match="not loaded"):
                uow.incidents.save(_opened("INC9"))
            with pytest.raises(ValidationError, match="holds Incident records"):
                uow.incidents.add({"id": "INC9"})
            uow.incidents.add(_opened("INC9"))
            with pytest.raises(ValidationError, match="already in this unit of work"):
                uow.incidents.add(_opened("INC9"))
            with pytest.raises(ValidationError, match="unknown filters"):
                uow.incidents.find(colour="red")
            with pytest.raises(ValidationError, match="cannot order by"):
                uow.incidents.find(order_by="title")
            with pytest.raises(AttributeError, match="no record kind 'problems'"):
                _ = uow.problems
            uow.commit()
        with store.unit_of_work() as uow:
            loaded = uow.incidents.get("INC9")
            other = _opened("INC9", title="Another incident").start(at=T0, by="x")
            with pytest.raises(ValidationError, match="not a later version"):
                uow.incidents.save(other)
            uow.incidents.save(loaded)  # unchanged: nothing to write

    def test_a_corrupted_row_is_a_typed_error(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.incidents.add(_opened("INC1").start(at=T0, by="sam"))
            uow.commit()
        self.corrupt_event(store, "INC1", 2)
        with (
            store.unit_of_work() as uow,
            pytest.raises(
                ValidationError, match=r"incidents 'INC1', stored event 2: unknown event type"
            ),
        ):
            uow.incidents.get("INC1")

    # ----------------------------------------------------------------------- queries

    def test_find_filters_orders_and_pages(self, store: Any) -> None:
        records = [
            _opened("INC1", impact=1, urgency=1, service="mail", at=T0),
            _opened("INC2", impact=3, urgency=3, ci="srv-1", at=T0 + timedelta(hours=1)).assign(
                group="network", assignee="sam", at=T0 + timedelta(hours=2), by="desk"
            ),
            _opened("INC3", at=T0 + timedelta(hours=3)).start(at=T0 + timedelta(hours=4), by="kim"),
        ]
        with store.unit_of_work() as uow:
            for record in records:
                uow.incidents.add(record)
            uow.commit()
        with store.unit_of_work() as uow:
            find = uow.incidents.find

            def ids(**filters: Any) -> list[str]:
                return [r.id for r in find(**filters)]

            assert ids() == ["INC1", "INC2", "INC3"]
            assert ids(descending=True) == ["INC3", "INC2", "INC1"]
            assert ids(state="new") == ["INC1", "INC2"]
            assert ids(state=["new", "in_progress"], limit=2, offset=1) == ["INC2", "INC3"]
            assert ids(priority=1) == ["INC1"]
            assert ids(priority=[3, 5]) == ["INC2", "INC3"]
            assert ids(assignment_group="network", assignee="sam") == ["INC2"]
            assert ids(service="mail") == ["INC1"]
            assert ids(ci="srv-1") == ["INC2"]
            assert ids(opened_from=T0 + timedelta(hours=1)) == ["INC2", "INC3"]
            assert ids(opened_until=T0 + timedelta(hours=1)) == ["INC1"]
            assert ids(order_by="priority", descending=True) == ["INC2", "INC3", "INC1"]
            assert ids(order_by="id", limit=1) == ["INC1"]
            found = find(state="in_progress")[0]
            uow.incidents.save(
                found.hold(reason="awaiting_caller", at=T0 + timedelta(hours=5), by="kim")
            )
            uow.commit()
        with store.unit_of_work() as uow:
            assert [r.id for r in uow.incidents.find(state="on_hold")] == ["INC3"]

    def test_indexed_columns_follow_every_save(self, store: Any) -> None:
        # Stores may rewrite only the columns a save changes: whichever way a record reaches
        # a save (added and saved before commit, saved again after a commit in the same unit
        # of work, found by a query), every filter must see its latest values.
        def h(n: int) -> datetime:
            return T0 + timedelta(hours=n)

        (kind,) = [k for k in kinds() if k.name == "incidents"]

        def indexed(record: Incident) -> dict[str, object]:
            """The columns ``find`` filters on by equality, as the store must index them."""
            columns = dict(kind.columns(record))
            del columns["opened_at"]  # a range filter, covered by the query test
            return columns

        def assert_indexed(*records: Incident) -> None:
            with store.unit_of_work() as uow:
                for record in records:
                    for name, value in indexed(record).items():
                        if value is None:
                            continue
                        found = [r.id for r in uow.incidents.find(**{name: value})]
                        want = [r.id for r in records if indexed(r)[name] == value]
                        assert found == want, (name, value, found)
                    assert uow.incidents.get(record.id) == record

        record = _opened("INC1", service="mail", ci="srv-1", at=T0)
        other = _opened("INC9", service="web", at=T0)  # a neighbour that must not move
        with store.unit_of_work() as uow:
            uow.incidents.add(record)
            uow.incidents.add(other)
            record = record.assign(group="network", at=h(1), by="desk")
            uow.incidents.save(record)
            uow.commit()
        assert_indexed(record, other)
        with store.unit_of_work() as uow:
            record = uow.incidents.get("INC1").start(at=h(2), by="sam")
            uow.incidents.save(record)
            uow.commit()
            record = record.reprioritize(impact=1, urgency=1, reason="outage", at=h(3), by="sam")
            uow.incidents.save(record)
            uow.commit()
            assert_indexed(record, other)
            record = record.assign(group="apps", assignee="kim", at=h(4), by="sam")
            uow.incidents.save(record)
            uow.commit()
        assert_indexed(record, other)
        with store.unit_of_work() as uow:
            (found,) = uow.incidents.find(assignment_group="apps")
            record = found.hold(reason="awaiting_vendor", at=h(5), by="kim")
            uow.incidents.save(record)
            uow.commit()
        assert_indexed(record, other)

    # Every store's subclass runs this same property: that is the point of a contract.
    @settings(
        max_examples=15,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(data=st.data())
    def test_any_history_round_trips(self, tmp_path: Path, data: st.DataObject) -> None:
        record = data.draw(incidents())
        place = tmp_path / uuid.uuid4().hex  # a fresh store for every example
        place.mkdir()
        store = self.make_store(place)
        with store.unit_of_work() as uow:
            uow.incidents.add(record)
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.incidents.get(record.id) == record
