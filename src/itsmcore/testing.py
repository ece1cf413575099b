"""Test helpers for applications and store implementers (needs pytest and hypothesis).

- :func:`histories`: a hypothesis strategy of valid records of any kind, drawn from the kind's
  own workflow: each step fires a trigger its state has, with arguments drawn from the
  verb's signature. The library's tests, SLA properties and benchmarks all draw from it.
- :class:`RepositoryContract`: the behaviour every store must have, on a tiny record kind of
  its own (:class:`Ticket`) so it depends on no practice. Subclass it, provide ``make_store``
  and ``corrupt_event``, and its tests run against your store.
- :class:`RecordKindContract`: one record kind's round trip through a store: any history the
  kind's workflow allows comes back equal and is found by every indexed column.
- :func:`ticking`: a ``ManualClock`` that advances a step every time it is read.
"""

from __future__ import annotations

import inspect
import json
import threading
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, ClassVar, Final, Self, TypeVar

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itsmcore.capabilities import Assignable, Assigned, Commentable, Commented
from itsmcore.clock import ManualClock
from itsmcore.errors import (
    ClosedError,
    ConcurrencyError,
    CorruptionError,
    DuplicateIdError,
    InvalidTransitionError,
    NotFoundError,
    ValidationError,
)
from itsmcore.events import Event
from itsmcore.incident import Incident
from itsmcore.priority import Level
from itsmcore.record import Column, Opened, Record, applies, label, text, verb
from itsmcore.repository import RecordKind
from itsmcore.storage._core import encode, retry
from itsmcore.workflow import ACTIVE, CANCELED, MET, Transition, Workflow

if typing.TYPE_CHECKING:
    import random
    from pathlib import Path

__all__ = [
    "T0",
    "RecordKindContract",
    "RepositoryContract",
    "Ticket",
    "histories",
    "incidents",
    "random_history",
    "ticking",
]

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
R = TypeVar("R", bound=Record)


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


# --------------------------------------------------------------------------- histories

_WORDS: Final = ("network", "service-desk", "database")
_ACTORS: Final = ("desk", "sam", "kim", "mia")
_FINISH: Final = "(finish)"
_Pick = Callable[[Sequence[Any]], Any]
"""``pick(options) -> one of them``: hypothesis's ``draw(sampled_from(...))`` or ``rnd.choice``."""


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except (NameError, TypeError):  # an annotation only a type checker can resolve
        return {}


def _options(hint: Any) -> list[Any] | None:
    """The values a verb parameter of this type is drawn from (``None``: cannot draw)."""
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if typing.get_origin(hint) is typing.Union:
        members = typing.get_args(hint)
    for member in members:
        if isinstance(member, type) and issubclass(member, Enum):
            if issubclass(member, Level) and not list(member):
                return [1, 2, 3]  # any scale's levels: the default matrix's, by number
            return list(member)
    for kind, values in ((bool, [False, True]), (str, list(_WORDS)), (int, [0, 1, 2, 3])):
        if kind in members:
            return values
    return None


@attrs.frozen
class _Param:
    name: str
    options: tuple[Any, ...]
    required: bool


def _params(fn: Callable[..., Any], skip: Iterable[str] = ()) -> tuple[_Param, ...] | None:
    """How to draw the keyword arguments of ``fn``; ``None`` if a required one cannot be."""
    hints = _hints(fn)
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not p.KEYWORD_ONLY or p.name in ("at", "by", *skip):
            continue
        options = _options(hints.get(p.name))
        required = p.default is p.empty
        if options is None:
            if required:
                return None
            continue
        out.append(_Param(p.name, tuple(options), required))
    return tuple(out)


def _arguments(record_type: type[Record], trigger: str, pick: _Pick) -> dict[str, Any] | None:
    """Keyword arguments for ``trigger``'s verb (none for a trigger without one)."""
    method = record_type._verbs.get(trigger)  # noqa: SLF001 - the engine's verb table
    if method is None:
        return {}
    if trigger == "update":  # takes **fields: the practice's editable ones
        editable = getattr(record_type, "editable", ())
        names = [n for n in editable if pick([True, False])] or list(editable[:1])
        return {n: pick([*_WORDS, "a longer description"]) for n in names}
    params = _params(method)
    if params is None:
        return None
    return {p.name: pick(p.options) for p in params if p.required or pick([True, False])}


def _walk_history(
    record_type: type[R],
    pick: _Pick,
    gap: Callable[[], timedelta],
    steps: int,
    *,
    record_id: str,
    at: datetime,
    triggers: frozenset[str] | None,
    arguments: Mapping[str, Callable[[_Pick], Mapping[str, Any]]],
    workflow: Workflow | None,
) -> R:
    """One record: opened with drawn arguments, then ``steps`` attempts at allowed triggers."""
    opening = _params(record_type.open, skip=("id", "workflow"))  # type: ignore[attr-defined]
    if opening is None:
        msg = f"{record_type.__name__}.open takes arguments histories() cannot draw"
        raise TypeError(msg)
    kwargs = {p.name: pick(p.options) for p in opening if p.required or pick([True, False])}
    if workflow is not None:
        kwargs["workflow"] = workflow
    record: R = record_type.open(id=record_id, at=at, by=pick(_ACTORS), **kwargs)  # type: ignore[attr-defined]
    for _ in range(steps):
        at += gap()
        workflow = record.workflow
        options = [t for t in workflow.triggers(record.state) if triggers is None or t in triggers]
        if not options:
            break
        # Ending the record (any move to a terminal state) counts as one choice among the
        # others, so histories get long enough to reach holds, reopens and reassignments.
        # It sits mid-list: hypothesis draws the ends of a list more often.
        final = [t for t in options if workflow.destination(record.state, t) in workflow.terminal]
        onward = [t for t in options if t not in final]
        if final and onward:
            middle = len(onward) // 2
            choice = pick([*onward[:middle], _FINISH, *onward[middle:]])
            trigger = pick(final) if choice is _FINISH else choice
        else:
            trigger = pick(options)
        given_ = arguments.get(trigger)
        data = given_(pick) if given_ is not None else _arguments(record_type, trigger, pick)
        if data is None:
            continue
        try:
            record = record.fire(trigger, at=at, by=pick(_ACTORS), **data)
        except (InvalidTransitionError, ValidationError):
            continue  # a guard or a value refused it: the record is unchanged
    return record


def histories(
    record_type: type[R],
    *,
    ids: st.SearchStrategy[str] | None = None,
    opened: st.SearchStrategy[datetime] | None = None,
    gaps: st.SearchStrategy[timedelta] | None = None,
    max_events: int = 10,
    triggers: Iterable[str] | None = None,
    arguments: Mapping[str, Callable[[_Pick], Mapping[str, Any]]] | None = None,
    workflow: Workflow | None = None,
) -> st.SearchStrategy[R]:
    """Valid records of ``record_type`` with random histories from its own workflow.

    Each record is opened with arguments drawn from ``open``'s signature (enums from their
    members, text from a few words), then up to ``max_events`` steps each fire a trigger the
    current state has (only ``triggers``, if given), its verb's arguments drawn the same way
    or by ``arguments[trigger](pick)``. Moves a guard or a value check refuses are skipped.

    Args:
        record_type: the record class (``Incident``, or any class on the record engine).
        ids: record ids (default ``"X0000"``-style).
        opened: opening instants (default: within 90 days of 2025-03-03 09:00 UTC).
        gaps: time between steps (default: 0 to 10 hours, in minutes).
        max_events: at most this many steps after the opening.
        triggers: only these triggers are drawn (default: all of the workflow's).
        arguments: per trigger, a function of ``pick`` giving the verb's arguments, for
            verbs whose arguments the signature does not say how to draw.
        workflow: the workflow to open on (default: the kind's).
    """
    chosen = None if triggers is None else frozenset(triggers)
    ids = ids if ids is not None else st.from_regex(r"X[0-9]{4}", fullmatch=True)
    opened = opened if opened is not None else st.integers(0, 60 * 24 * 90).map(_minutes_after)
    gaps = gaps if gaps is not None else st.integers(0, 600).map(_minutes)
    extra = dict(arguments or {})

    @st.composite
    def draw(draw_: st.DrawFn) -> R:
        def pick(options: Sequence[Any]) -> Any:
            return draw_(st.sampled_from(options))

        return _walk_history(
            record_type,
            pick,
            lambda: draw_(gaps),
            draw_(st.integers(0, max_events)),
            record_id=draw_(ids),
            at=draw_(opened),
            triggers=chosen,
            arguments=extra,
            workflow=workflow,
        )

    return draw()


def random_history(
    record_type: type[R],
    rnd: random.Random,
    *,
    record_id: str,
    at: datetime,
    steps: int = 10,
    max_gap: timedelta = timedelta(hours=10),
    triggers: Iterable[str] | None = None,
    arguments: Mapping[str, Callable[[_Pick], Mapping[str, Any]]] | None = None,
    workflow: Workflow | None = None,
) -> R:
    """One record like :func:`histories` draws, from a seeded ``random.Random`` (benchmarks)."""
    minutes = max_gap // timedelta(minutes=1)
    return _walk_history(
        record_type,
        rnd.choice,
        lambda: timedelta(minutes=rnd.randrange(minutes + 1)),
        steps,
        record_id=record_id,
        at=at,
        triggers=None if triggers is None else frozenset(triggers),
        arguments=dict(arguments or {}),
        workflow=workflow,
    )


def _minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def _minutes_after(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def incidents(
    ids: st.SearchStrategy[str] | None = None, max_events: int = 10
) -> st.SearchStrategy[Incident]:
    """Valid incidents with random histories: :func:`histories` of ``Incident``."""
    ids = ids if ids is not None else st.from_regex(r"INC[0-9]{4}", fullmatch=True)
    return histories(Incident, ids=ids, max_events=max_events)


# --------------------------------------------------------------------------- a tiny kind


class TicketState(StrEnum):
    """The contract's record kind: open, then done or void."""

    OPEN = "open"
    DONE = "done"
    VOID = "void"


@attrs.frozen(kw_only=True)
class TicketOpened(Opened):
    """A ticket was opened."""

    type: ClassVar[str] = "contract_ticket.opened"
    title: str


@attrs.frozen(kw_only=True)
class TicketAssigned(Assigned):
    """A ticket was assigned."""

    type: ClassVar[str] = "contract_ticket.assigned"


@attrs.frozen(kw_only=True)
class TicketCommented(Commented):
    """A comment on a ticket."""

    type: ClassVar[str] = "contract_ticket.commented"


@attrs.frozen(kw_only=True)
class TicketEstimated(Event):
    """Story points were estimated."""

    type: ClassVar[str] = "contract_ticket.estimated"
    points: int


@attrs.frozen(kw_only=True)
class TicketFinished(Event):
    """The ticket was done or voided."""

    type: ClassVar[str] = "contract_ticket.finished"


_OPEN, _DONE, _VOID = TicketState.OPEN, TicketState.DONE, TicketState.VOID
TICKET_WORKFLOW: Final = Workflow(
    name="contract_ticket",
    states=tuple(TicketState),
    initial=_OPEN,
    terminal=(_DONE, _VOID),
    transitions=(
        Transition("finish", _OPEN, _DONE),
        Transition("void", _OPEN, _VOID),
        Transition("assign", _OPEN),
        Transition("comment", _OPEN),
        Transition("estimate", _OPEN),
    ),
    tags={ACTIVE: (_OPEN,), MET: (_DONE,), CANCELED: (_VOID,)},
)


@attrs.frozen(kw_only=True, slots=False)
class Ticket(Assignable, Commentable):
    """The store contract's record kind: a title, story points, an assignment, comments."""

    kind: ClassVar[str] = "contract_ticket"
    number_prefix: ClassVar[str | None] = "T"
    state_enum: ClassVar[type[StrEnum]] = TicketState
    default_workflow: ClassVar[Workflow] = TICKET_WORKFLOW
    indexed: ClassVar[tuple[Column, ...]] = (
        Column("state", str),
        Column("assignment_group", str),
        Column("points", int),
        Column("opened_at", datetime, range=("opened_from", "opened_until")),
    )

    title: str
    points: int | None = None

    @classmethod
    def open(cls, *, id: str, title: str, at: datetime, by: str) -> Self:  # noqa: A002
        """Open a ticket."""
        opening = TicketOpened(
            at=at,
            by=by,
            state=TICKET_WORKFLOW.initial,
            workflow=TICKET_WORKFLOW.name,
            id=label(id, "id"),
            title=text(title, "title"),
        )
        return cls._opened(opening, TICKET_WORKFLOW)

    @verb
    def estimate(self, *, points: int, at: datetime, by: str) -> Self:
        """Set the story points."""
        return self._do("estimate", TicketEstimated, at, by, points=points)

    @verb
    def finish(self, *, at: datetime, by: str) -> Self:
        """Done."""
        return self._do("finish", TicketFinished, at, by)

    @verb
    def void(self, *, at: datetime, by: str) -> Self:
        """Withdrawn."""
        return self._do("void", TicketFinished, at, by)

    @applies(TicketEstimated)
    def _on_estimated(self, e: TicketEstimated) -> Mapping[str, Any]:
        return {"points": e.points}

    @applies(TicketFinished)
    def _on_finished(self, _e: TicketFinished) -> Mapping[str, Any]:
        return {}


TICKETS: Final = RecordKind("contract_tickets", Ticket)
"""The contract's record kind, as the stores serve it."""


def _ticket(record_id: str, at: datetime = T0, title: str = "Fix the printer") -> Ticket:
    return Ticket.open(id=record_id, title=title, at=at, by="desk")


# --------------------------------------------------------------------------- the store contract

_SETTINGS: Final = settings(
    max_examples=15,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)


class RepositoryContract:
    """The behaviour every store shares. Subclass, implement the two hooks, run pytest.

    The contract stores :class:`Ticket` records (``uow.contract_tickets``), a kind of its own,
    so it tests storage and nothing of any practice.
    """

    def make_store(self, tmp_path: Path, kinds: Sequence[RecordKind[Any]]) -> Any:
        """A new, empty store serving ``kinds`` (pass them to your store's ``kinds=``)."""
        raise NotImplementedError

    def corrupt_event(self, store: Any, kind: str, record_id: str, version: int) -> None:
        """Overwrite a stored event's type with one no release knows."""
        raise NotImplementedError

    def overwrite_event_data(
        self, store: Any, kind: str, record_id: str, version: int, data: str
    ) -> None:
        """Overwrite a stored event's JSON data with ``data`` (valid JSON)."""
        raise NotImplementedError

    def overwrite_column(
        self, store: Any, kind: str, record_id: str, column: str, value: object
    ) -> None:
        """Overwrite one indexed column of a stored record's row."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Any:
        return self.make_store(tmp_path, [TICKETS])

    # ----------------------------------------------------------------------- basics

    def test_added_records_come_back_equal(self, store: Any) -> None:
        record = _ticket("T1").assign(group="network", assignee="sam", at=T0, by="desk")
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(record)
            uow.commit()
        with store.unit_of_work() as uow:
            assert uow.contract_tickets.get("T1") == record
            assert uow.repository(Ticket).get("T1") == record
            assert uow.contract_tickets.history("T1") == record.history

    def test_unknown_ids_are_not_found(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            with pytest.raises(NotFoundError, match="T404"):
                uow.contract_tickets.get("T404")
            with pytest.raises(KeyError):
                uow.contract_tickets.history("T404")

    def test_nothing_is_written_without_commit(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1"))
        with pytest.raises(RuntimeError), store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T2"))
            raise RuntimeError
        with store.unit_of_work() as uow:
            assert uow.contract_tickets.find() == []

    def test_saves_append_events_and_keep_history(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1"))
            uow.commit()
        with store.unit_of_work() as uow:
            record = uow.contract_tickets.get("T1").estimate(points=3, at=T0, by="sam")
            uow.contract_tickets.save(record)
            uow.contract_tickets.save(record.comment(text="on it", at=T0, by="sam"))
            uow.commit()
            later = uow.contract_tickets.get("T1").finish(at=T0, by="sam")
            uow.contract_tickets.save(later)  # committing again in the same unit of work
            uow.commit()
        with store.unit_of_work() as uow:
            stored = uow.contract_tickets.get("T1")
        assert stored == later
        assert stored.version == 4
        assert [e.type for e in stored.history] == [
            "contract_ticket.opened", "contract_ticket.estimated",
            "contract_ticket.commented", "contract_ticket.finished",
        ]  # fmt: skip

    # ----------------------------------------------------------------------- the outbox

    def test_committed_events_are_offered_through_the_outbox_once(self, store: Any) -> None:
        """What notifications need (``itsmcore.notify``), from every store.

        A row per committed event, written by the commit itself; none for a unit of work
        that did not land; each handed over once.
        """
        from itsmcore.notify import (  # noqa: PLC0415 - only this test needs notifications
            Dispatcher,
            MessageTemplate,
            Subscription,
            dispatch_pending,
        )

        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1").assign(group="ops", assignee="sam", at=T0,
                                                          by="desk"))  # fmt: skip
            uow.commit()
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T2"))  # never committed
        with store.unit_of_work() as first, store.unit_of_work() as second:
            a, b = first.contract_tickets.get("T1"), second.contract_tickets.get("T1")
            first.contract_tickets.save(a.finish(at=T0, by="sam"))
            first.commit()
            second.contract_tickets.save(b.void(at=T0, by="kim"))
            with pytest.raises(ConcurrencyError):
                second.commit()
        pending = store.outbox().pending()
        assert [(row.key, row.type) for row in pending] == [
            ("contract_tickets/T1/1", "contract_ticket.opened"),
            ("contract_tickets/T1/2", "contract_ticket.assigned"),
            ("contract_tickets/T1/3", "contract_ticket.finished"),
        ]
        handed: list[Any] = []
        dispatcher = Dispatcher(
            channels={"log": handed.append},
            subscriptions=[Subscription("all", events=["*"], recipients=["assignee"],
                                        channel="log", template=MessageTemplate("$id", "$event"))],
        )  # fmt: skip
        report = dispatch_pending(store, dispatcher, at=T0 + timedelta(hours=1))
        assert report.dispatched == tuple(row.key for row in pending)
        assert len(handed) == 2  # the opening named no assignee: nobody to tell
        assert store.outbox().pending() == []
        assert dispatch_pending(store, dispatcher, at=T0 + timedelta(hours=2)).handed == ()

    # ----------------------------------------------------------------------- concurrency

    def test_a_stale_save_raises_and_writes_nothing_of_its_unit_of_work(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1"))
            uow.contract_tickets.add(_ticket("T2"))
            uow.commit()
        with store.unit_of_work() as first, store.unit_of_work() as second:
            a = first.contract_tickets.get("T1")
            b = second.contract_tickets.get("T1")
            first.contract_tickets.save(a.finish(at=T0, by="sam"))
            first.commit()
            second.contract_tickets.save(
                second.contract_tickets.get("T2").estimate(points=1, at=T0, by="kim")
            )
            second.contract_tickets.save(b.void(at=T0, by="kim"))
            with pytest.raises(ConcurrencyError) as err:
                second.commit()
        assert (err.value.record_id, err.value.expected, err.value.actual) == ("T1", 1, 2)
        with store.unit_of_work() as uow:
            assert uow.contract_tickets.get("T1").state == "done"
            assert uow.contract_tickets.get("T2").version == 1  # the other save did not land

    def test_adding_an_existing_id_is_its_own_error(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1"))
            uow.commit()
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T2"))
            uow.contract_tickets.add(_ticket("T1", title="Another"))
            with pytest.raises(DuplicateIdError, match="already holds a record with id 'T1'") as e:
                uow.commit()
        assert (e.value.record_id, e.value.kind) == ("T1", "contract_tickets")
        assert not isinstance(e.value, ConcurrencyError)
        with store.unit_of_work() as uow:
            assert uow.contract_tickets.get("T1").title == "Fix the printer"
            with pytest.raises(NotFoundError):
                uow.contract_tickets.get("T2")  # nothing of that unit of work was written

    def test_retrying_on_conflict_converges_across_threads(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1"))
            uow.commit()
        per_thread, threads = 5, 4
        errors: list[BaseException] = []

        def worker(name: str) -> None:
            try:
                for _ in range(per_thread):
                    while True:
                        with store.unit_of_work() as uow:
                            record = uow.contract_tickets.get("T1")
                            uow.contract_tickets.save(record.comment(text=name, at=T0, by=name))
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
            history = uow.contract_tickets.history("T1")
        assert len(history) == 1 + per_thread * threads  # no gaps, nothing lost
        assert sorted(e.by for e in history[1:]) == sorted(
            f"t{k}" for k in range(threads) for _ in range(per_thread)
        )

    def test_record_numbers_are_handed_out_once_across_threads(self, store: Any) -> None:
        numbers: list[str] = []

        def worker() -> None:
            for _ in range(25):
                with store.unit_of_work() as uow:
                    numbers.append(uow.contract_tickets.new_id())  # committed or not

        pool = [threading.Thread(target=worker) for _ in range(8)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert sorted(numbers) == [f"T{k:07d}" for k in range(1, 201)]

    def test_retry_redoes_a_read_modify_write_until_it_lands(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1"))
            uow.commit()
        attempts: list[str] = []

        def worker(name: str) -> None:
            def work(uow: Any) -> int:
                attempts.append(name)
                record = uow.contract_tickets.get("T1")
                uow.contract_tickets.save(record.comment(text=name, at=T0, by=name))
                return int(record.version)

            for _ in range(5):
                retry(store, work, attempts=200)

        pool = [threading.Thread(target=worker, args=(f"t{k}",)) for k in range(4)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        with store.unit_of_work() as uow:
            assert uow.contract_tickets.get("T1").version == 1 + 4 * 5
        assert len(attempts) >= 20
        with pytest.raises(ValidationError, match="attempts"):
            retry(store, lambda _uow: None, attempts=0)

    # ----------------------------------------------------------------------- bad input

    def test_bad_input_is_refused(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            tickets = uow.contract_tickets
            with pytest.raises(NotFoundError, match="T9"):
                tickets.save(_ticket("T9"))  # never stored: add() it
            with pytest.raises(ValidationError, match="holds Ticket records"):
                tickets.add({"id": "T9"})
            tickets.add(_ticket("T9"))
            with pytest.raises(ValidationError, match="already in this unit of work"):
                tickets.add(_ticket("T9"))
            with pytest.raises(ValidationError, match="unknown filters: colour"):
                tickets.find(colour="red")
            with pytest.raises(ValidationError, match="cannot order by 'title'"):
                tickets.find(order_by="title")
            with pytest.raises(ValidationError, match="points= takes int"):
                tickets.find(points="3")
            with pytest.raises(ValidationError, match="limit must be a whole number"):
                tickets.find(limit=1.5)
            with pytest.raises(AttributeError, match="no record kind 'problems'"):
                _ = uow.problems
            with pytest.raises(ValidationError, match="no record kind holds"):
                uow.repository(Incident)
            uow.commit()
        with store.unit_of_work() as uow:
            loaded = uow.contract_tickets.get("T9")
            other = _ticket("T9", title="Another ticket").finish(at=T0, by="x")
            with pytest.raises(ConcurrencyError) as err:  # not derived from the stored one
                uow.contract_tickets.save(other)
            assert (err.value.expected, err.value.actual) == (0, 1)
            uow.contract_tickets.save(loaded)  # unchanged: nothing to write

    def test_a_corrupted_row_is_a_typed_error(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1").finish(at=T0, by="sam"))
            uow.commit()
        self.corrupt_event(store, "contract_tickets", "T1", 2)
        with (
            store.unit_of_work() as uow,
            pytest.raises(
                CorruptionError,
                match=r"contract_tickets 'T1', stored event 2: unknown event type",
            ) as err,
        ):
            uow.contract_tickets.get("T1")
        assert (err.value.kind, err.value.record_id, err.value.version) == (
            "contract_tickets", "T1", 2,
        )  # fmt: skip
        assert not isinstance(err.value, ValidationError)  # the store's fault, not the caller's

    def test_a_finished_unit_of_work_refuses_every_call(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1"))
            uow.commit()
        tickets = uow.contract_tickets
        later = _ticket("T1").estimate(points=1, at=T0, by="kim")
        calls = {
            "commit": uow.commit,
            "rollback": uow.rollback,
            "get": lambda: tickets.get("T1"),
            "add": lambda: tickets.add(_ticket("T2")),
            "save": lambda: tickets.save(later),
            "find": tickets.find,
            "history": lambda: tickets.history("T1"),
            "enter": uow.__enter__,
        }
        for name, call in calls.items():
            with pytest.raises(ClosedError, match="has ended"):
                call()
            assert name  # every call refused, none reached the store
        with store.unit_of_work() as fresh:
            assert fresh.contract_tickets.get("T1").version == 1
            assert [t.id for t in fresh.contract_tickets.find()] == ["T1"]

    def test_a_failed_commit_can_be_redone_in_the_same_unit_of_work(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1"))
            uow.commit()
        with store.unit_of_work() as first, store.unit_of_work() as second:
            a, b = first.contract_tickets.get("T1"), second.contract_tickets.get("T1")
            first.contract_tickets.save(a.comment(text="first", at=T0, by="kim"))
            first.commit()
            second.contract_tickets.save(b.comment(text="second", at=T0, by="sam"))
            with pytest.raises(ConcurrencyError):
                second.commit()
            # The error's advice, in the same unit of work: reload and apply the change again.
            again = second.contract_tickets.get("T1")
            assert again.version == 2
            second.contract_tickets.save(again.comment(text="second", at=T0, by="sam"))
            second.commit()
        with store.unit_of_work() as uow:
            texts = [getattr(e, "text", None) for e in uow.contract_tickets.history("T1")]
        assert texts == [None, "first", "second"]

    def test_a_record_loaded_earlier_is_saved_if_nobody_changed_it_since(self, store: Any) -> None:
        # The web-form pattern: load in one request, save the user's change in another.
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1"))
            uow.commit()
        with store.unit_of_work() as uow:
            form = uow.contract_tickets.get("T1")
        with store.unit_of_work() as uow:
            uow.contract_tickets.save(form.estimate(points=3, at=T0, by="kim"))
            uow.commit()
        stale = form.comment(text="typed in a second tab", at=T0, by="sam")
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T2"))
            with pytest.raises(ConcurrencyError) as err:
                uow.contract_tickets.save(stale)
            assert (err.value.record_id, err.value.expected, err.value.actual) == ("T1", 1, 2)
        with store.unit_of_work() as uow:
            assert [e.type for e in uow.contract_tickets.history("T1")][-1] == (
                "contract_ticket.estimated"
            )
            assert uow.contract_tickets.find(opened_from=T0) == [uow.contract_tickets.get("T1")]

    def test_text_no_store_keeps_is_refused_before_anything_is_written(self, store: Any) -> None:
        for bad in ("nul\x00byte", "lone \ud800 surrogate"):
            with pytest.raises(ValidationError, match="title"):
                Ticket.open(id="T1", title=bad, at=T0, by="desk")
            # A hand-built history is held to the same rule when it is written.
            opening = TicketOpened(
                at=T0, by="desk", state="open", workflow="contract_ticket", id="T1", title=bad
            )
            forged = Ticket.replay([opening])
            with store.unit_of_work() as uow:
                uow.contract_tickets.add(_ticket("T0"))
                uow.contract_tickets.add(forged)
                with pytest.raises(ValidationError, match=r"contract_ticket\.opened\.title"):
                    uow.commit()
        with pytest.raises(ValidationError, match="at most 255"):
            _ticket("T1").assign(group="g" * 256, at=T0, by="desk")
        with store.unit_of_work() as uow:
            assert uow.contract_tickets.find() == []

    def test_corrupted_rows_are_named_and_other_records_still_load(self, store: Any) -> None:
        with store.unit_of_work() as uow:
            for record_id in ("T1", "T2", "T3", "T4"):
                uow.contract_tickets.add(_ticket(record_id).finish(at=T0, by="sam"))
            uow.commit()
        opening = json.loads(encode(1, _ticket("T1").history[0]).data)
        self.overwrite_event_data(store, "contract_tickets", "T1", 2, "[" * 5_000 + "]" * 5_000)
        self.overwrite_event_data(
            store, "contract_tickets", "T2", 1, json.dumps({**opening, "id": "T9"})
        )
        self.overwrite_event_data(
            store, "contract_tickets", "T3", 1, json.dumps({**opening, "id": "T3", "title": 42})
        )
        self.overwrite_column(store, "contract_tickets", "T4", "state", "open")
        expected = {
            "T1": "stored event 2: its data is not JSON",
            "T2": "stored event 1: it opens record 'T9'",
            "T3": "stored event 1: its data does not fit",
        }
        with store.unit_of_work() as uow:
            for record_id, why in expected.items():
                with pytest.raises(CorruptionError, match=why):
                    uow.contract_tickets.get(record_id)
            assert uow.contract_tickets.get("T4").state == "done"  # its events are whole
            with pytest.raises(CorruptionError, match=r"T4.*out of step"):
                uow.contract_tickets.find(state="open")

    # ----------------------------------------------------------------------- queries

    def test_find_filters_orders_and_pages(self, store: Any) -> None:
        def h(n: int) -> datetime:
            return T0 + timedelta(hours=n)

        records = [
            _ticket("T1", at=T0).estimate(points=5, at=T0, by="kim"),
            _ticket("T2", at=h(1)).assign(group="network", assignee="sam", at=h(2), by="desk"),
            _ticket("T3", at=h(3)).estimate(points=1, at=h(3), by="kim").finish(at=h(4), by="k"),
        ]
        with store.unit_of_work() as uow:
            for record in records:
                uow.contract_tickets.add(record)
            uow.commit()
        with store.unit_of_work() as uow:
            find = uow.contract_tickets.find

            def ids(**filters: Any) -> list[str]:
                return [r.id for r in find(**filters)]

            assert ids() == ["T1", "T2", "T3"]  # the first range column orders by default
            assert ids(descending=True) == ["T3", "T2", "T1"]
            assert ids(state="open") == ["T1", "T2"]
            assert ids(state=["open", "done"], limit=2, offset=1) == ["T2", "T3"]
            assert ids(state=TicketState.DONE) == ["T3"]
            assert ids(points=5) == ["T1"]
            assert ids(points=[1, 5]) == ["T1", "T3"]
            assert ids(assignment_group="network") == ["T2"]
            assert ids(opened_from=h(1)) == ["T2", "T3"]
            assert ids(opened_until=h(1)) == ["T1"]
            assert ids(opened_from=h(1), opened_until=h(3)) == ["T2"]
            assert ids(order_by="id", limit=1) == ["T1"]
            assert ids(limit=0) == []
            found = find(state="open", points=5)[0]
            uow.contract_tickets.save(found.finish(at=h(5), by="kim"))
            uow.commit()
        with store.unit_of_work() as uow:
            assert [r.id for r in uow.contract_tickets.find(state="done")] == ["T1", "T3"]

    def test_empty_values_sort_last_in_both_directions(self, store: Any) -> None:
        # T2 has no points: every store puts it last, ascending and descending alike.
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(_ticket("T1").estimate(points=3, at=T0, by="kim"))
            uow.contract_tickets.add(_ticket("T2"))
            uow.contract_tickets.add(_ticket("T3").estimate(points=8, at=T0, by="kim"))
            uow.contract_tickets.add(_ticket("T4").estimate(points=3, at=T0, by="kim"))
            uow.commit()
        with store.unit_of_work() as uow:
            find = uow.contract_tickets.find
            assert [r.id for r in find(order_by="points")] == ["T1", "T4", "T3", "T2"]
            assert [r.id for r in find(order_by="points", descending=True)] == [
                "T3", "T4", "T1", "T2",
            ]  # fmt: skip
            assert [r.id for r in find(order_by="assignment_group")] == ["T1", "T2", "T3", "T4"]

    def test_pages_by_offset_and_by_keyset_agree_with_one_sorted_list(self, store: Any) -> None:
        # 30 tickets, points None or 1-3 (many ties, many empty): every way of paging must
        # give the order a plain sort gives, empty values last in both directions.
        points = [None if k % 4 == 0 else 1 + k * 7 % 3 for k in range(30)]
        with store.unit_of_work() as uow:
            for k, p in enumerate(points):
                record = _ticket(f"T{k:02d}", at=T0 + timedelta(minutes=k % 5))
                if p is not None:
                    record = record.estimate(points=p, at=record.opened_at, by="kim")
                uow.contract_tickets.add(record)
            uow.commit()
        with store.unit_of_work() as uow:
            tickets = uow.contract_tickets
            for order_by in ("points", "opened_at", "id"):
                for descending in (False, True):
                    everything = tickets.find(order_by=order_by, descending=descending)

                    def key(t: Ticket, order_by: str = order_by) -> Any:
                        return t.id if order_by == "id" else TICKETS.values(t)[order_by]

                    valued = sorted(
                        (t for t in everything if key(t) is not None),
                        key=lambda t: (key(t), t.id),
                        reverse=descending,
                    )
                    empty = sorted(
                        (t for t in everything if key(t) is None),
                        key=lambda t: t.id,
                        reverse=descending,
                    )
                    expected = [t.id for t in (*valued, *empty)]
                    assert [t.id for t in everything] == expected, (order_by, descending)
                    spec = {"order_by": order_by, "descending": descending}
                    pages, after = [], None
                    while True:
                        page = tickets.find(**spec, limit=4, after=after)
                        pages += [t.id for t in page]
                        if len(page) < 4:
                            break
                        after = page[-1]
                    assert pages == expected
                    for offset in (0, 5, 21, 22, 23, 29, 30, 31):
                        page = tickets.find(**spec, limit=5, offset=offset)
                        assert [t.id for t in page] == expected[offset : offset + 5]
                    assert [t.id for t in tickets.iterate(batch=3, **spec)] == expected
            assert [t.id for t in tickets.iterate(batch=2, points=[1, 2])] == [
                t.id for t in tickets.find(points=[1, 2])
            ]
            with pytest.raises(ValidationError, match="not both"):
                tickets.find(after=everything[0], offset=1)
            with pytest.raises(ValidationError, match="after= takes the last Ticket"):
                tickets.find(after="T01")

    def test_indexed_columns_follow_every_save(self, store: Any) -> None:
        # Stores may rewrite only the columns a save changes: whichever way a record reaches
        # a save (added and saved before commit, saved again after a commit in the same unit
        # of work, found by a query), every filter must see its latest values.
        def h(n: int) -> datetime:
            return T0 + timedelta(hours=n)

        def assert_indexed(*records: Ticket) -> None:
            with store.unit_of_work() as uow:
                for record in records:
                    for name, value in TICKETS.values(record).items():
                        if value is None or name == "opened_at":  # a range: the query test
                            continue
                        found = [r.id for r in uow.contract_tickets.find(**{name: value})]
                        want = [r.id for r in records if TICKETS.values(r)[name] == value]
                        assert found == want, (name, value, found)
                    assert uow.contract_tickets.get(record.id) == record

        record = _ticket("T1", at=T0)
        other = _ticket("T9", at=T0).estimate(points=2, at=T0, by="kim")  # must not move
        with store.unit_of_work() as uow:
            uow.contract_tickets.add(record)
            uow.contract_tickets.add(other)
            record = record.assign(group="network", at=h(1), by="desk")
            uow.contract_tickets.save(record)
            uow.commit()
        assert_indexed(record, other)
        with store.unit_of_work() as uow:
            record = uow.contract_tickets.get("T1").estimate(points=2, at=h(2), by="sam")
            uow.contract_tickets.save(record)
            uow.commit()
            record = record.estimate(points=5, at=h(3), by="sam")
            uow.contract_tickets.save(record)
            uow.commit()
            assert_indexed(record, other)
            record = record.assign(group="apps", assignee="kim", at=h(4), by="sam")
            uow.contract_tickets.save(record)
            uow.commit()
        assert_indexed(record, other)
        with store.unit_of_work() as uow:
            (found,) = uow.contract_tickets.find(assignment_group="apps")
            record = found.finish(at=h(5), by="kim")
            uow.contract_tickets.save(record)
            uow.commit()
        assert_indexed(record, other)

    # Every store's subclass runs this same property: that is the point of a contract.
    @_SETTINGS
    @given(data=st.data())
    def test_any_history_round_trips(self, tmp_path: Path, data: st.DataObject) -> None:
        _assert_round_trip(self, tmp_path, TICKETS, data.draw(histories(Ticket)))


class RecordKindContract:
    """One record kind's round trip through a store, over histories its workflow allows.

    Subclass with ``record_kind`` (a ``RecordKind``) and ``make_store`` (as for
    :class:`RepositoryContract`); override :meth:`records` to draw other histories.
    """

    record_kind: ClassVar[RecordKind[Any]]

    def make_store(self, tmp_path: Path, kinds: Sequence[RecordKind[Any]]) -> Any:
        """A new, empty store serving ``kinds``."""
        raise NotImplementedError

    def records(self) -> st.SearchStrategy[Any]:
        """The records to round-trip: :func:`histories` of the kind's class."""
        return histories(self.record_kind.cls)

    @_SETTINGS
    @given(data=st.data())
    def test_any_history_round_trips(self, tmp_path: Path, data: st.DataObject) -> None:
        _assert_round_trip(self, tmp_path, self.record_kind, data.draw(self.records()))


def _assert_round_trip(
    contract: RepositoryContract | RecordKindContract,
    tmp_path: Path,
    kind: RecordKind[Any],
    record: Any,
) -> None:
    """Stored, ``record`` comes back equal, with its history, under every indexed column."""
    place = tmp_path / uuid.uuid4().hex  # a fresh store for every example
    place.mkdir()
    store = contract.make_store(place, [kind])
    with store.unit_of_work() as uow:
        uow.repository(kind.cls).add(record)
        uow.commit()
    with store.unit_of_work() as uow:
        repo = uow.repository(kind.cls)
        loaded = repo.get(record.id)
        assert loaded == record
        assert loaded.workflow == record.workflow
        assert repo.history(record.id) == record.history
        for column in kind.columns:
            value = getattr(record, column.name)
            if value is None:
                continue
            if column.range is None:
                filters: dict[str, Any] = {column.name: value}
            else:
                low, high = column.range
                filters = {low: value, high: value + timedelta(microseconds=1)}
            assert [r.id for r in repo.find(**filters)] == [record.id], filters
