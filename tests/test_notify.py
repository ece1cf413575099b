"""Notifications: the outbox every store writes, dispatch exactly once, and kill -9 in between."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import notify_crash
from itsmcore import ConcurrencyError, DefinitionError, Incident, Problem, ValidationError
from itsmcore.errors import DuplicateIdError
from itsmcore.notify import (
    Dispatcher,
    EmailChannel,
    MessageTemplate,
    Notification,
    Subscription,
    WebhookChannel,
    dispatch_pending,
    purge_dispatched,
)
from itsmcore.storage import InMemoryStore
from itsmcore.storage._core import encode
from itsmcore.testing import T0, histories

H = timedelta(hours=1)
M = timedelta(minutes=1)
TEMPLATE = MessageTemplate("$id $event", "Hello $recipient: $title")


def _opened(record_id: str = "INC1", **fields: Any) -> Incident:
    spec: dict[str, Any] = {
        "id": record_id, "title": "VPN down", "caller": "mia", "impact": 2, "urgency": 2,
        "at": T0, "by": "desk",
    } | fields  # fmt: skip
    return Incident.open(**spec)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        return str(tmp_path / "desk.sqlite3")
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQL store's place, for tests of schemas and of processes: a path or a DSN."""
    if request.param == "sqlite":
        return str(tmp_path / "desk.sqlite3")
    return str(request.getfixturevalue("postgres_database"))


def _store(target: str) -> Any:
    if target == "memory":
        return InMemoryStore()
    return notify_crash.open_store(target)


def _add(store: Any, *records: Any) -> None:
    with store.unit_of_work() as uow:
        for record in records:
            uow.incidents.add(record)
        uow.commit()


def _save(store: Any, record_id: str, change: Any) -> Any:
    with store.unit_of_work() as uow:
        record = change(uow.incidents.get(record_id))
        uow.incidents.save(record)
        uow.commit()
    return record


# --------------------------------------------------------------------------- the outbox


def test_every_committed_event_has_one_outbox_row_with_its_key_and_payload(target: str) -> None:
    store = _store(target)
    _add(store, _opened("INC1"), _opened("INC2"))
    record = _save(store, "INC1", lambda i: i.assign(group="network", at=T0 + M, by="desk")
                   .start(at=T0 + 2 * M, by="sam"))  # fmt: skip
    rows = store.outbox().rows()
    assert [r.key for r in rows] == [
        "incidents/INC1/1", "incidents/INC2/1", "incidents/INC1/2", "incidents/INC1/3",
    ]  # fmt: skip
    assert len({r.seq for r in rows}) == 4
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assigned = rows[2]
    assert (assigned.kind, assigned.record_id, assigned.version, assigned.type) == (
        "incidents", "INC1", 2, "incident.assigned",
    )  # fmt: skip
    assert json.loads(assigned.payload) == json.loads(encode(2, record.history[1]).data)
    assert assigned.created_at == encode(2, record.history[1]).at
    assert (assigned.attempts, assigned.last_error, assigned.dispatched_at) == (0, None, None)
    assert store.outbox().pending() == rows


def test_what_is_not_committed_leaves_no_outbox_row(target: str) -> None:
    store = _store(target)
    _add(store, _opened("INC1"))
    with store.unit_of_work() as uow:  # rolled back: the block ends without a commit
        uow.incidents.save(uow.incidents.get("INC1").start(at=T0, by="sam"))
    with store.unit_of_work() as uow:
        uow.incidents.save(uow.incidents.get("INC1").start(at=T0, by="sam"))
        uow.rollback()
        uow.commit()
    with store.unit_of_work() as first, store.unit_of_work() as second:
        a, b = first.incidents.get("INC1"), second.incidents.get("INC1")
        first.incidents.save(a.start(at=T0 + M, by="sam"))
        first.commit()
        second.incidents.add(_opened("INC9"))  # lands with the lost race or not at all
        second.incidents.save(b.cancel(reason="duplicate", at=T0 + M, by="kim"))
        with pytest.raises(ConcurrencyError):
            second.commit()
    with store.unit_of_work() as uow:
        uow.incidents.add(_opened("INC1"))
        with pytest.raises(DuplicateIdError):
            uow.commit()
    assert [r.key for r in store.outbox().rows()] == ["incidents/INC1/1", "incidents/INC1/2"]


@settings(max_examples=20)
@given(records=st.lists(histories(Incident, max_events=6), min_size=1, max_size=3,
                        unique_by=lambda r: r.id))  # fmt: skip
def test_the_outbox_holds_exactly_the_stored_events(records: list[Incident]) -> None:
    """Any histories, committed in two steps (opening, then the rest): one row per event."""
    store = InMemoryStore()
    _add(store, *(Incident.replay(r.history[:1]) for r in records))
    with store.unit_of_work() as uow:
        for record in records:
            uow.incidents.save(record)
        uow.commit()
    rows = store.outbox().rows()
    expected = {
        (f"incidents/{r.id}/{v}", e.type) for r in records for v, e in enumerate(r.history, 1)
    }
    assert {(row.key, row.type) for row in rows} == expected
    assert len(rows) == len(expected)


def _old_schema(target: str) -> None:
    """Turn a store into one the release before the outbox made (SQLite 2, PostgreSQL 3)."""
    drop = ["DROP TABLE itsm_outbox", "DROP TABLE itsm_deliveries"]
    if target.startswith("host="):
        import psycopg  # noqa: PLC0415

        with psycopg.connect(target, autocommit=True) as conn:
            for sql in drop:
                conn.execute(sql)
            conn.execute("UPDATE itsm_meta SET value = '3' WHERE key = 'schema'")
    else:
        with sqlite3.connect(target) as conn:
            for sql in drop:
                conn.execute(sql)
            conn.execute("UPDATE itsm_meta SET value = '2' WHERE key = 'schema'")


def test_a_store_made_before_the_outbox_is_upgraded_when_opened(database: str) -> None:
    """The outbox is a migration: an older store gets its tables, and events committed
    before it are not offered (they were never promised to anyone)."""
    target = database
    store = _store(target)
    _add(store, _opened("INC1"))
    store.close()
    _old_schema(target)
    assert not _has_outbox(target)
    reopened = _store(target)
    assert reopened.outbox().rows() == []
    _save(reopened, "INC1", lambda i: i.start(at=T0, by="sam"))
    assert [r.key for r in reopened.outbox().rows()] == ["incidents/INC1/2"]
    with reopened.unit_of_work() as uow:
        assert uow.incidents.get("INC1").version == 2
    version = "4" if target.startswith("host=") else "3"
    assert _schema_version(target) == version


def _has_outbox(target: str) -> bool:
    if target.startswith("host="):
        import psycopg  # noqa: PLC0415

        with psycopg.connect(target) as conn:
            row = conn.execute("SELECT to_regclass('itsm_outbox') IS NOT NULL").fetchone()
        return bool(row and row[0])
    with sqlite3.connect(target) as conn:
        sql = "SELECT count(*) FROM sqlite_master WHERE name = 'itsm_outbox'"
        return bool(conn.execute(sql).fetchone()[0])


def _schema_version(target: str) -> str:
    if target.startswith("host="):
        import psycopg  # noqa: PLC0415

        with psycopg.connect(target) as conn:
            row = conn.execute("SELECT value FROM itsm_meta WHERE key = 'schema'").fetchone()
    else:
        with sqlite3.connect(target) as conn:
            row = conn.execute("SELECT value FROM itsm_meta WHERE key = 'schema'").fetchone()
    assert row is not None
    return str(row[0])


# --------------------------------------------------------------------------- definitions


def _sub(**fields: Any) -> Subscription:
    spec: dict[str, Any] = {
        "name": "resolved", "events": ["incident.resolved"], "recipients": ["caller"],
        "channel": "email", "template": TEMPLATE,
    } | fields  # fmt: skip
    return Subscription(**spec)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"events": ["incident.teleported"]}, "no event type 'incident.teleported'"),
        ({"events": ["teleported"]}, "no event type 'teleported'"),
        ({"events": "incident.resolved"}, "collection of event types"),
        ({"events": []}, "at least one event type"),
        ({"events": [42]}, "event types are strings"),
        ({"recipients": ["boss"]}, "unknown recipient role 'boss'"),
        ({"recipients": [42]}, "a recipient is a role"),
        ({"recipients": "caller"}, "collection of roles"),
        ({"recipients": []}, "at least one recipient"),
        ({"template": MessageTemplate("$id", "$titel")}, r"names \$titel, which incident"),
        ({"template": MessageTemplate("$code", "")}, None),  # resolved has a code
        ({"events": ["incident.resolved", "incident.assigned"],
          "template": MessageTemplate("$code", "")}, r"\$code, which incident.assigned"),
        ({"events": ["assigned"], "template": MessageTemplate("$caller", "")},
         r"\$caller, which \w+\.assigned does not have"),
        ({"template": "Resolved: $id"}, "template is a MessageTemplate"),
        ({"name": "two words"}, "subscription name is an identifier"),
        ({"channel": ""}, "channel name is an identifier"),
    ],
)  # fmt: skip
def test_bad_subscriptions_are_definition_errors(fields: dict[str, Any], message: str) -> None:
    if message is None:
        assert _sub(**fields).types == {"incident.resolved"}
        return
    with pytest.raises(DefinitionError, match=message):
        _sub(**fields)


@pytest.mark.parametrize(
    ("subject", "body", "message"),
    [
        ("$", "", "bad placeholder"),
        ("ok", "${title", "bad placeholder"),
        ("ok", "costs $5", "bad placeholder"),
        (None, "", "subject is text"),
    ],
)
def test_templates_with_bad_placeholders_are_definition_errors(
    subject: Any, body: str, message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        MessageTemplate(subject, body)
    assert MessageTemplate("$$5 for ${id}", "").names == {"id"}


def test_short_names_and_star_take_every_practice_s_event() -> None:
    sub = _sub(events=["assigned", "resolved"], template=MessageTemplate("$id", "$assignee"))
    assert {"incident.assigned", "problem.assigned", "change.assigned"} <= sub.types
    assert {"incident.resolved", "problem.resolved"} <= sub.types
    assert "incident.opened" not in sub.types
    everything = _sub(events=["*"], template=MessageTemplate("$id $event $by", ""))
    assert {"incident.opened", "problem.moved", "state_changed"} <= everything.types


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Dispatcher(channels={"email": "smtp"}, subscriptions=[]), "must be callable"),
        (lambda: Dispatcher(channels={"e mail": print}, subscriptions=[]), "identifier"),
        (lambda: Dispatcher(channels=[print], subscriptions=[]), "maps names"),
        (lambda: Dispatcher(channels={"email": print}, subscriptions=[_sub(channel="sms")]),
         "channel 'sms', which is not one of the dispatcher's"),
        (lambda: Dispatcher(channels={"email": print}, subscriptions=[_sub(), _sub()]),
         "two subscriptions are named 'resolved'"),
        (lambda: Dispatcher(channels={"email": print}, subscriptions=_sub()), "collection"),
        (lambda: Dispatcher(channels={"email": print}, subscriptions=["x"]), "are Subscription"),
        (lambda: EmailChannel("smtp", sender="desk@example.org"), "send must be callable"),
        (lambda: EmailChannel(print, sender="desk"), "sender is an e-mail address"),
        (lambda: EmailChannel(print, sender="d@x", address="x"), "address must be callable"),
        (lambda: EmailChannel(print, sender="d@x", received=1), "received must be callable"),
        (lambda: WebhookChannel(None, url="https://x"), "post must be callable"),
        (lambda: WebhookChannel(print, url="ftp://x"), "http"),
    ],
)  # fmt: skip
def test_channels_that_cannot_work_are_definition_errors(build: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()


# --------------------------------------------------------------------------- messages


def _incident_story(store: Any) -> None:
    """Opened by mia, assigned to sam of network, reassigned to kim, resolved."""
    _add(store, _opened("INC1"))
    _save(store, "INC1", lambda i: i.assign(group="network", assignee="sam", at=T0 + M, by="desk"))
    _save(store, "INC1", lambda i: i.assign(assignee="kim", at=T0 + 2 * M, by="desk"))
    _save(store, "INC1", lambda i: i.resolve(code="solution_provided", notes="new tunnel",
                                             at=T0 + H, by="kim"))  # fmt: skip


def test_recipients_are_resolved_from_the_record_as_the_event_left_it() -> None:
    store = InMemoryStore()
    _incident_story(store)
    got: list[Notification] = []

    def everyone(record: Any, event: Any) -> list[str]:
        return [record.caller, "auditor", "auditor"]

    dispatcher = Dispatcher(
        channels={"log": got.append},
        subscriptions=[
            _sub(name="assigned", events=["assigned"], recipients=["assignee", "group"],
                 channel="log", template=MessageTemplate("$id to $assignee", "")),
            _sub(name="resolved", recipients=["caller", "watchers", everyone], channel="log",
                 template=MessageTemplate("$id $code", "$notes, by $by at $at")),
        ],
    )  # fmt: skip
    report = dispatch_pending(store, dispatcher, at=T0 + 2 * H)
    assert [(n.version, n.recipient, n.role, n.subject) for n in got] == [
        (2, "sam", "assignee", "INC1 to sam"),  # the assignee of version 2, not today's
        (2, "network", "group", "INC1 to sam"),
        (3, "kim", "assignee", "INC1 to kim"),
        (3, "network", "group", "INC1 to kim"),
        (4, "mia", "caller", "INC1 solution_provided"),  # no watchers field: nobody
        (4, "auditor", "everyone", "INC1 solution_provided"),  # mia once: deduplicated
    ]
    assert got[-1].body == "new tunnel, by kim at 2025-03-03T10:00:00+00:00"
    assert report.dispatched == tuple(f"incidents/INC1/{v}" for v in (1, 2, 3, 4))
    assert report.handed == tuple(n.key for n in got)
    assert len(set(report.handed)) == 6
    assert store.outbox().pending() == []


def test_the_email_channel_builds_a_standard_message() -> None:
    store = InMemoryStore()
    _incident_story(store)
    outbox: list[Any] = []
    email = EmailChannel(outbox.append, sender="desk@example.org",
                         address=lambda name: f"{name}@example.org")  # fmt: skip
    dispatcher = Dispatcher(
        channels={"email": email},
        subscriptions=[_sub(template=MessageTemplate(
            "[$id] resolved:\n$title", "Hello $recipient,\n\n$title: $notes ($code).\n"))],
    )  # fmt: skip
    report = dispatch_pending(store, dispatcher, at=T0 + 2 * H)
    (message,) = outbox
    (key,) = report.handed
    assert message["From"] == "desk@example.org"
    assert message["To"] == "mia@example.org"
    assert message["Subject"] == "[INC1] resolved: VPN down"  # a header is one line
    assert message["Message-ID"] == f"<{key}@itsmcore.invalid>"
    assert message["Idempotency-Key"] == key
    assert message.get_content() == "Hello mia,\n\nVPN down: new tunnel (solution_provided).\n"


def test_an_address_that_is_not_one_fails_the_row_not_the_dispatch() -> None:
    store = InMemoryStore()
    _incident_story(store)
    email = EmailChannel([].append, sender="desk@example.org")  # names are not addresses
    dispatcher = Dispatcher(channels={"email": email}, subscriptions=[_sub()])
    report = dispatch_pending(store, dispatcher, at=T0 + 2 * H)
    ((key, error),) = report.failed
    assert key == "incidents/INC1/4"
    assert "no e-mail address for 'mia'" in error
    (row,) = store.outbox().pending()
    assert (row.attempts, row.key) == (1, key)
    assert "no e-mail address" in (row.last_error or "")


def test_the_webhook_channel_posts_json_with_the_key() -> None:
    store = InMemoryStore()
    _incident_story(store)
    posts: list[tuple[str, bytes, dict[str, str]]] = []
    hook = WebhookChannel(lambda url, body, headers: posts.append((url, body, headers)),
                          url="https://hooks.example.org/desk")  # fmt: skip
    dispatcher = Dispatcher(channels={"hook": hook}, subscriptions=[_sub(channel="hook")])
    report = dispatch_pending(store, dispatcher, at=T0 + 2 * H)
    ((url, body, headers),) = posts
    document = json.loads(body)
    assert url == "https://hooks.example.org/desk"
    assert headers == {"Content-Type": "application/json", "Idempotency-Key": report.handed[0]}
    assert document["key"] == report.handed[0]
    assert (document["event"], document["id"], document["version"]) == (
        "incident.resolved", "INC1", 4,
    )  # fmt: skip
    assert document["data"]["notes"] == "new tunnel"
    assert document["subject"] == "INC1 incident.resolved"


def test_problems_notify_through_the_same_subscriptions() -> None:
    store = InMemoryStore()
    problem = Problem.open(id="PRB1", title="VPN flaps", impact=2, urgency=2, at=T0, by="desk")
    with store.unit_of_work() as uow:
        uow.problems.add(problem.assign(group="network", assignee="lee", at=T0 + M, by="desk"))
        uow.commit()
    got: list[Notification] = []
    anyone = _sub(events=["assigned"], recipients=["assignee"], channel="log",
                  template=MessageTemplate("$id", "$event"))  # fmt: skip
    dispatcher = Dispatcher(channels={"log": got.append}, subscriptions=[anyone])
    dispatch_pending(store, dispatcher, at=T0 + H)
    assert [(n.kind, n.record_id, n.event, n.recipient) for n in got] == [
        ("problem", "PRB1", "problem.assigned", "lee")
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"at": T0.replace(tzinfo=None)}, "naive"),
        ({"limit": 0}, "limit must be"),
        ({"limit": True}, "limit must be"),
        ({"lease": timedelta(0)}, "lease must be"),
        ({"dispatcher": "d"}, "dispatcher is a Dispatcher"),
        ({"store": object()}, "has no outbox"),
    ],
)
def test_bad_dispatch_arguments_are_validation_errors(fields: dict[str, Any], message: str) -> None:
    spec: dict[str, Any] = {
        "store": InMemoryStore(),
        "dispatcher": Dispatcher(channels={"email": print}, subscriptions=[_sub()]),
        "at": T0,
    } | fields
    with pytest.raises(ValidationError, match=message):
        dispatch_pending(spec.pop("store"), spec.pop("dispatcher"), **spec)


# --------------------------------------------------------------------------- dispatching


class Flaky:
    """A channel that refuses while ``down`` and keeps what it accepted, keyed."""

    def __init__(self, *, probe: bool = False) -> None:
        self.down = False
        self.accepted: list[str] = []
        if probe:
            self.received = lambda key: key in self.accepted

    def __call__(self, notification: Notification) -> None:
        if self.down:
            raise ConnectionError("mail relay unreachable")
        self.accepted.append(notification.key)


def _resolved_dispatcher(channel: Any) -> Dispatcher:
    return Dispatcher(channels={"log": channel}, subscriptions=[
        _sub(name="assigned", events=["incident.assigned"], recipients=["assignee", "group"],
             channel="log"),
        _sub(channel="log"),
    ])  # fmt: skip


def test_each_notification_is_handed_over_once_across_calls(target: str) -> None:
    store = _store(target)
    _incident_story(store)
    channel = Flaky()
    dispatcher = _resolved_dispatcher(channel)
    first = dispatch_pending(store, dispatcher, at=T0 + H, limit=2)
    assert first.dispatched == ("incidents/INC1/1", "incidents/INC1/2")
    assert dispatch_pending(store, dispatcher, at=T0 + H).dispatched == (
        "incidents/INC1/3", "incidents/INC1/4",
    )  # fmt: skip
    assert dispatch_pending(store, dispatcher, at=T0 + 9 * H) == dispatch_pending(
        store, dispatcher, at=T0 + 9 * H
    )
    assert dispatch_pending(store, dispatcher, at=T0 + 9 * H).handed == ()
    assert len(channel.accepted) == 5
    assert len(set(channel.accepted)) == 5
    assert all(r.dispatched_at is not None for r in store.outbox().rows())


def test_a_refusing_channel_holds_its_record_back_and_gets_the_same_keys_later(
    target: str,
) -> None:
    store = _store(target)
    _incident_story(store)
    _add(store, _opened("INC2", caller="lee"))
    _save(store, "INC2", lambda i: i.resolve(code="user_error", notes="typo", at=T0, by="s"))
    channel = Flaky()
    dispatcher = _resolved_dispatcher(channel)
    channel.down = True
    report = dispatch_pending(store, dispatcher, at=T0 + H)
    # INC1/2 failed: INC1's later events wait for it; INC2 fails on its own.
    assert [key for key, _ in report.failed] == ["incidents/INC1/2", "incidents/INC2/2"]
    assert "ConnectionError: mail relay unreachable" in report.failed[0][1]
    assert report.deferred == ("incidents/INC1/3", "incidents/INC1/4")
    assert report.handed == ()
    pending = {r.key: r.attempts for r in store.outbox().pending()}
    assert pending == {"incidents/INC1/2": 1, "incidents/INC1/3": 0, "incidents/INC1/4": 0,
                       "incidents/INC2/2": 1}  # fmt: skip
    channel.down = False
    again = dispatch_pending(store, dispatcher, at=T0 + H)  # released: no lease to wait for
    # The refused handovers are in doubt (the channel might have taken them before it
    # raised): without received(), they go again with the same keys.
    assert len(again.redelivered) == 2
    assert set(again.redelivered) <= set(again.handed)
    assert len(channel.accepted) == len(set(channel.accepted)) == 6
    assert store.outbox().pending() == []


def test_a_live_claim_is_respected_until_its_lease_ends(target: str) -> None:
    store = _store(target)
    _incident_story(store)
    outbox = store.outbox()
    now = int(T0.timestamp() * 1e6)
    taken = outbox.claim("someone-else", now, now + 60_000_000, 10)  # a minute's lease
    assert len(taken) == 4
    channel = Flaky()
    dispatcher = _resolved_dispatcher(channel)
    assert dispatch_pending(store, dispatcher, at=T0 + 59 * timedelta(seconds=1)).handed == ()
    assert len(dispatch_pending(store, dispatcher, at=T0 + M).handed) == 5
    assert len(channel.accepted) == 5


def test_notifications_in_doubt_are_asked_about_when_the_channel_can_answer(
    target: str,
) -> None:
    """A dispatcher that died after marking a notification claimed: the channel's
    ``received(key)`` says whether the handover happened."""
    store = _store(target)
    _incident_story(store)
    channel = Flaky(probe=True)
    dispatcher = _resolved_dispatcher(channel)
    rows = store.outbox().claim("dead", 0, 1, 10)
    with store.unit_of_work() as uow:
        record = uow.incidents.get("INC1")
    notes = [n for row in rows for n in dispatcher.notifications(
        row, Incident.replay(record.history[: row.version]))]  # fmt: skip
    assert len(notes) == 5
    for note in notes[:2]:  # the dead one got as far as claiming two of them...
        assert store.outbox().begin(note.key, note.outbox_key, "dead", 0)
    channel(notes[0])  # ...and handing over the first
    report = dispatch_pending(store, dispatcher, at=T0)
    assert report.confirmed == (notes[0].key,)
    assert report.redelivered == (notes[1].key,)  # in doubt, not received: handed now
    assert report.handed == tuple(n.key for n in notes[1:])
    assert Counter(channel.accepted) == Counter(n.key for n in notes)


def test_purging_removes_only_rows_dispatched_before_the_time(target: str) -> None:
    store = _store(target)
    _incident_story(store)
    channel = Flaky()
    dispatcher = _resolved_dispatcher(channel)
    dispatch_pending(store, dispatcher, at=T0 + H, limit=2)  # versions 1 and 2
    dispatch_pending(store, dispatcher, at=T0 + 3 * H, limit=1)  # version 3
    assert purge_dispatched(store, before=T0 + H) == 0  # dispatched at T0 + H: not before
    assert purge_dispatched(store, before=T0 + 2 * H) == 2
    assert [r.key for r in store.outbox().rows()] == ["incidents/INC1/3", "incidents/INC1/4"]
    assert len(channel.accepted) == 4  # two for each assignment
    assert store.outbox().deliveries(channel.accepted[:2]) == {}
    kept = channel.accepted[2:]
    assert store.outbox().deliveries(kept) == dict.fromkeys(kept, "handed")
    assert purge_dispatched(store, before=T0 + 9 * H) == 1  # the pending one stays
    _save(store, "INC1", lambda i: i.close(at=T0 + 4 * H, by="desk"))
    assert [r.key for r in store.outbox().pending()] == ["incidents/INC1/4", "incidents/INC1/5"]
    dispatch_pending(store, dispatcher, at=T0 + 9 * H)
    assert len(channel.accepted) == len(set(channel.accepted)) == 5
    with pytest.raises(ValidationError, match="naive"):
        purge_dispatched(store, before=T0.replace(tzinfo=None))


def test_a_broken_record_or_recipient_function_fails_its_row_and_no_other() -> None:
    store = InMemoryStore()
    _incident_story(store)
    _add(store, _opened("INC2", caller="lee"))
    _save(store, "INC2", lambda i: i.resolve(code="user_error", notes="typo", at=T0, by="s"))
    _add(store, _opened("INC3", caller="kai"))
    _save(store, "INC3", lambda i: i.resolve(code="user_error", notes="typo", at=T0, by="s"))
    rows = store._events["incidents", "INC3"]
    rows[1] = rows[1]._replace(data="{not json")

    def picky(record: Any, event: Any) -> str:
        if record.id == "INC1":
            raise LookupError("no such person in the directory")
        return record.caller

    got: list[Notification] = []
    dispatcher = Dispatcher(channels={"log": got.append},
                            subscriptions=[_sub(recipients=[picky], channel="log")])  # fmt: skip
    report = dispatch_pending(store, dispatcher, at=T0 + 2 * H)
    failed = dict(report.failed)
    assert failed["incidents/INC1/4"] == "LookupError: no such person in the directory"
    assert failed["incidents/INC3/2"].startswith("CorruptionError: incidents 'INC3'")
    assert [(n.record_id, n.recipient, n.role) for n in got] == [("INC2", "lee", "picky")]
    assert {r.key for r in store.outbox().pending()} == {"incidents/INC1/4", "incidents/INC3/2"}


# --------------------------------------------------------------------------- kill -9


def _child(target: Any, *args: Any) -> tuple[Any, Any]:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=target, args=(*args, ready))
    process.start()
    return process, ready


def _kill(process: Any, ready: Any) -> None:
    assert ready.wait(timeout=120), "the child never reached its kill point"
    os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=60)
    assert process.exitcode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(signal, "pause"), reason="needs POSIX signals")
@pytest.mark.parametrize("probe", [False, True], ids=["keyed-channel", "channel-that-answers"])
def test_killed_committers_and_dispatchers_lose_nothing_and_repeat_only_in_doubt(
    database: str, tmp_path: Path, probe: bool
) -> None:
    """kill -9 (1) between commit and dispatch, (2) after the channel wrote a notification
    to disk and before the store recorded it, (3) after a notification was claimed and
    before it was handed over; then a dispatcher runs to the end.

    Every notification's key reaches the file. A channel without ``received`` sees exactly
    one key twice: the one in doubt after kill (2), handed over again with its key; a
    channel that answers ``received`` sees each key exactly once.
    """
    notify_crash.seed(database)
    log = tmp_path / "channel.log"
    process, ready = _child(notify_crash.commit_then_wait, database)
    _kill(process, ready)  # (1): committed, nothing dispatched yet
    store = notify_crash.open_store(database)
    assert len(store.outbox().pending()) == 3 * 3  # three openings, assignments, resolutions
    assert not log.exists()

    def dispatcher_until(round_: int, stop: tuple[int, str] | None) -> None:
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        process = context.Process(
            target=notify_crash.dispatch, args=(database, str(log), ready, round_, stop, probe)
        )
        process.start()
        if stop is None:
            process.join(timeout=120)
            assert process.exitcode == 0
        else:
            _kill(process, ready)

    dispatcher_until(1, (2, "after"))  # (2): the 2nd is on disk, not recorded as handed
    lines = log.read_text().split()
    assert len(lines) == 2
    in_doubt = lines[1]
    dispatcher_until(2, (3, "before"))  # (3): claimed, then killed before handing over
    dispatcher_until(3, None)  # runs to the end

    lines = log.read_text().split()
    expected = notify_crash.expected_keys(store)
    assert len(expected) == len(notify_crash.IDS) * notify_crash.PER_INCIDENT
    assert set(lines) == expected  # no key lost
    counts = Counter(lines)
    if probe:
        assert len(lines) == len(expected)  # exactly once
    else:
        assert len(lines) == len(expected) + 1  # at least once: the one in doubt, again
        assert [k for k, c in counts.items() if c > 1] == [in_doubt]
    assert store.outbox().pending() == []
    assert set(store.outbox().deliveries(sorted(expected)).values()) == {"handed"}


@pytest.mark.skipif(not hasattr(signal, "pause"), reason="needs POSIX signals")
@pytest.mark.parametrize("probe", [False, True], ids=["keyed-channel", "channel-that-answers"])
def test_dispatchers_killed_at_random_points_lose_nothing(
    database: str, tmp_path: Path, probe: bool
) -> None:
    """The attack of notify_crash.py at a small budget: each round commits and dispatches
    and is killed at a random point (after the commit, before or after a handover)."""
    figures = notify_crash.attack(database, tmp_path / "channel.log", 4, probe=probe)
    assert figures["keys lost"] == 0
    assert figures["notifications"] == 4 * 3 * 2  # four reassignments of three incidents
    assert figures["kills"] >= 1


# --------------------------------------------------------------------------- property


class Fickle:
    """A channel that fails as told: refusing outright, or after accepting (a lost ack)."""

    def __init__(self, *, probe: bool) -> None:
        self.accepted: list[str] = []
        self.plan: list[str] = []  # what the next handovers do: "ok", "refuse", "lose-ack"
        self.lost_acks = 0
        if probe:
            self.received = lambda key: key in self.accepted

    def __call__(self, notification: Notification) -> None:
        what = self.plan.pop(0) if self.plan else "ok"
        if what == "refuse":
            raise ConnectionError("refused")
        self.accepted.append(notification.key)
        if what == "lose-ack":
            self.lost_acks += 1
            raise TimeoutError("accepted, but the answer never came")


@settings(max_examples=40)
@given(
    probe=st.booleans(),
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("change"), st.sampled_from(["INC1", "INC2"])),
            st.tuples(st.just("dispatch"), st.lists(st.sampled_from(["ok", "refuse", "lose-ack"]),
                                                    max_size=4), st.integers(1, 3)),
        ),
        max_size=12,
    ),
)  # fmt: skip
def test_whatever_fails_each_key_arrives_and_repeats_only_after_a_lost_ack(
    probe: bool, steps: list[Any]
) -> None:
    store = InMemoryStore()
    _add(store, _opened("INC1"), _opened("INC2", caller="lee"))
    channel = Fickle(probe=probe)
    dispatcher = _resolved_dispatcher(channel)
    clock = T0
    for step in steps:
        clock += M
        if step[0] == "change":
            person = f"p{clock.minute}"
            _save(store, step[1], lambda i: i.assign(assignee=person, group="g", at=clock, by="d"))  # noqa: B023
        else:
            channel.plan = list(step[1])
            dispatch_pending(store, dispatcher, at=clock, limit=step[2])
            assert set(channel.accepted) <= notify_crash.expected_keys(store, dispatcher)
    channel.plan = []
    while dispatch_pending(store, dispatcher, at=clock + H).dispatched:
        pass
    expected = notify_crash.expected_keys(store, dispatcher)
    assert set(channel.accepted) == expected
    repeats = len(channel.accepted) - len(expected)
    assert repeats == (0 if probe else channel.lost_acks)
    assert store.outbox().pending() == []
