r"""Notifications from committed events: subscriptions, templates, channels, exactly-once dispatch.

Every store writes an *outbox* row for each event it commits, in the commit's own
transaction (``store.outbox()``). A ``Dispatcher`` says which events go to whom through which
channel and with which words: ``Subscription``\\ s name event types (``"incident.resolved"``,
``"resolved"`` for every practice's, or ``"*"``), recipients (``"caller"``, ``"assignee"``,
``"group"``, ``"watchers"``, resolved from the record as the event left it, or a function of
your own), a channel by name and a ``MessageTemplate`` whose placeholders are checked when it
is defined. ``dispatch_pending(store, dispatcher, at=...)`` claims pending rows, hands each
notification to its channel once, and records that it did, in the store.

What is guaranteed (see docs/notifications.md): no committed event is lost and none is
offered twice; each notification reaches its channel **at least once**, always with the same
idempotency key (``Notification.key``); it reaches it **exactly once** unless the dispatcher
dies between the channel accepting it and the store recording that, in which case the next
dispatch hands it over again with the same key, unless the channel can say whether it has
that key (a ``received(key)`` method): then it is asked, and handed over only if it has not.
"""

from __future__ import annotations

import hashlib
import json
import string
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from itsmcore._time import to_us
from itsmcore.errors import DefinitionError, TransientError, ValidationError
from itsmcore.events import Event, event_types, utc
from itsmcore.record import Record, record_class
from itsmcore.storage._outbox import HANDED, OutboxRow

if TYPE_CHECKING:
    from itsmcore.storage._outbox import Outbox

__all__ = [
    "PLACEHOLDERS",
    "ROLES",
    "Channel",
    "DispatchReport",
    "Dispatcher",
    "EmailChannel",
    "MessageTemplate",
    "Notification",
    "OutboxRow",
    "Subscription",
    "WebhookChannel",
    "dispatch_pending",
    "purge_dispatched",
]

PLACEHOLDERS: Final = frozenset(
    {"kind", "id", "version", "event", "at", "by", "state", "recipient", "role", "key"}
)
"""Placeholders every template may use: the record's practice (``kind``), ``id``, the
event's ``version``, type (``event``), time (``at``, ISO 8601 UTC), actor (``by``) and the
record's ``state`` after it; the ``recipient``, their ``role``, and the notification's
idempotency ``key``. A template may also name the fields of the record and of the event of
every event type its subscription takes (``title``, ``priority``; ``code``, ``notes``)."""

_RECORD_ONLY: Final = frozenset({"history", "workflow"})


Resolver = Callable[[Any, Event], "str | Iterable[str] | None"]
"""``resolver(record, event)``: the recipient(s) of a role, from the record as the event left it."""


def _attr(name: str) -> Resolver:
    return lambda record, _event: getattr(record, name, None)


ROLES: Final[Mapping[str, Resolver]] = {
    "caller": _attr("caller"),
    "assignee": _attr("assignee"),
    "group": _attr("assignment_group"),
    "watchers": _attr("watchers"),
}
"""The recipient roles a subscription may name, and the record field each reads (a record
without that field has nobody in the role)."""


# --------------------------------------------------------------------------- templates


def _template(text: object, name: str) -> string.Template:
    if not isinstance(text, str):
        raise DefinitionError(f"a template's {name} is text, got {type(text).__name__}")
    template = string.Template(text)
    if not template.is_valid():
        raise DefinitionError(
            f"the template's {name} {text[:60]!r} has a bad placeholder: write $name or "
            "${name}, and $$ for a dollar sign"
        )
    return template


@attrs.frozen
class MessageTemplate:
    """A notification's subject and body, with ``$name`` / ``${name}`` placeholders.

    The syntax is ``string.Template``'s (``$$`` is a dollar sign). Which names may appear is
    checked when the template is given to a ``Subscription``, against the fields of the
    event types it takes.

    >>> sorted(MessageTemplate("$id resolved", "Hello $recipient, $title: $notes").names)
    ['id', 'notes', 'recipient', 'title']
    """

    subject: str
    body: str
    names: frozenset[str] = attrs.field(init=False)
    """The placeholders the subject and body use."""
    _parts: tuple[string.Template, string.Template] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        parts = (_template(self.subject, "subject"), _template(self.body, "body"))
        object.__setattr__(self, "_parts", parts)
        names = frozenset(n for p in parts for n in p.get_identifiers())
        object.__setattr__(self, "names", names)

    def render(self, values: Mapping[str, str]) -> tuple[str, str]:
        """``(subject, body)`` with every placeholder replaced by its value in ``values``."""
        subject, body = self._parts
        try:
            # A subject is one header line: line breaks a value brings in become spaces.
            return " ".join(subject.substitute(values).split()), body.substitute(values)
        except KeyError as exc:
            raise ValidationError(f"no value for the template's ${exc.args[0]}") from None


# --------------------------------------------------------------------------- subscriptions


def _record_class_of(event: str) -> type[Record]:
    prefix, dot, _ = event.partition(".")
    if dot:
        try:
            return record_class(prefix)
        except ValidationError:
            pass
    return Record  # an event any record may record (a vendor trigger's "state_changed")


def _fields(cls: type) -> set[str]:
    return {f.name for f in attrs.fields(cls)}


def _placeholders(event: str, cls: type[Event]) -> set[str]:
    return (_fields(_record_class_of(event)) - _RECORD_ONLY) | _fields(cls) | PLACEHOLDERS


def _collection(events: object) -> tuple[str, ...]:
    if isinstance(events, str) or not isinstance(events, Iterable):
        raise DefinitionError(
            f"events is a collection of event types, e.g. ('incident.resolved',), got {events!r}"
        )
    return tuple(events)


def _event_types(events: Iterable[object]) -> frozenset[str]:
    """The event types ``events`` names: full types, ``"resolved"`` (every practice's), ``"*"``."""
    known = event_types()
    out: set[str] = set()
    for name in events:
        if not isinstance(name, str):
            raise DefinitionError(f"event types are strings, got {name!r}")
        if name == "*":
            matched = set(known)
        elif "." in name or name in known:
            matched = {name} if name in known else set()
        else:
            matched = {t for t in known if t.endswith(f".{name}")}
        if not matched:
            raise DefinitionError(
                f"no event type {name!r} is registered; use a type such as "
                f"'incident.resolved', a short name such as 'resolved' for every practice's, "
                f"or '*'; known types: {', '.join(sorted(known))}"
            )
        out |= matched
    if not out:
        raise DefinitionError("a subscription takes at least one event type")
    return frozenset(out)


def _recipients(value: object) -> tuple[str | Resolver, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise DefinitionError(
            f"recipients is a collection of roles, e.g. ('caller',), got {value!r}"
        )
    out = tuple(value)
    for entry in out:
        if isinstance(entry, str):
            if entry not in ROLES:
                raise DefinitionError(
                    f"unknown recipient role {entry!r}; use one of {', '.join(ROLES)}, or a "
                    "function (record, event) -> names"
                )
        elif not callable(entry):
            raise DefinitionError(
                f"a recipient is a role ({', '.join(ROLES)}) or a function (record, event) -> "
                f"names, got {entry!r}"
            )
    if not out:
        raise DefinitionError("a subscription names at least one recipient role")
    return out


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise DefinitionError(f"a {what} name is an identifier (e.g. 'email'), got {value!r}")
    return value


def _subscription_name(value: object) -> str:
    return _name(value, "subscription")


def _channel_name(value: object) -> str:
    return _name(value, "channel")


@attrs.frozen
class Subscription:
    r"""Which events go to whom, through which channel, in which words.

    ``events``: event types (``"incident.assigned"``), short names matching that event of
    every practice registered now (``"resolved"`` is ``incident.resolved``,
    ``problem.resolved`` …) or ``"*"`` (every type registered now). ``recipients``: roles
    of ``ROLES`` or functions ``(record, event) -> name(s)``. ``channel``: the name of a
    channel of the ``Dispatcher``. Unknown event types, unknown roles and template
    placeholders the events cannot fill are ``DefinitionError``\\ s here.

    >>> Subscription("resolved", events=["incident.resolved"], recipients=["caller"],
    ...              channel="email", template=MessageTemplate("$id: $titel", ""))
    Traceback (most recent call last):
    ...
    itsmcore.errors.DefinitionError: template of subscription 'resolved' names $titel, ...
    """

    name: str = attrs.field(converter=_subscription_name)
    events: tuple[str, ...] = attrs.field(converter=_collection)
    recipients: tuple[str | Resolver, ...] = attrs.field(converter=_recipients)
    channel: str = attrs.field(converter=_channel_name)
    template: MessageTemplate
    types: frozenset[str] = attrs.field(init=False)
    """The event types this subscription takes, as resolved when it was defined."""

    @events.validator
    def _check_events(self, _attribute: object, value: tuple[str, ...]) -> None:
        object.__setattr__(self, "types", _event_types(value))

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.template, MessageTemplate):
            raise DefinitionError(
                f"subscription {self.name!r}: template is a MessageTemplate, got "
                f"{type(self.template).__name__}"
            )
        known = event_types()
        for event in sorted(self.types):
            allowed = _placeholders(event, known[event])
            unknown = self.template.names - allowed
            if unknown:
                raise DefinitionError(
                    f"template of subscription {self.name!r} names "
                    f"{', '.join('$' + n for n in sorted(unknown))}, which {event} does not "
                    f"have; it may use {', '.join(sorted(allowed))}"
                )


# --------------------------------------------------------------------------- notifications


@attrs.frozen(kw_only=True)
class Notification:
    """One message for one recipient about one committed event, as handed to a channel.

    ``key`` is its idempotency key: the same for every handover of this notification, and
    different for every other (it digests the event's outbox key, the subscription and the
    recipient). A channel that keeps the keys it accepted can drop a repeat.
    """

    key: str
    outbox_key: str
    """The event's outbox key: ``kind/record id/version``."""
    subscription: str
    channel: str
    recipient: str
    role: str
    subject: str
    body: str
    event: str
    kind: str
    record_id: str
    version: int
    at: datetime
    by: str
    payload: str
    """The event's stored fields, as JSON text."""


class Channel(Protocol):
    """Anything that accepts a notification: ``channel(notification)``.

    It may raise to refuse it (the dispatch is retried later, with the same key). A channel
    may also have ``received(key) -> bool``, saying whether it already accepted a
    notification with that key: then one in doubt after a crash is asked about, not resent.
    """

    def __call__(self, notification: Notification, /) -> object:
        """Accept ``notification`` (or raise)."""
        ...


def _callable(value: object, what: str) -> Any:
    if not callable(value):
        raise DefinitionError(f"{what} must be callable, got {type(value).__name__}")
    return value


def _probe(value: object) -> Callable[[str], bool] | None:
    return None if value is None else _callable(value, "received")


class EmailChannel:
    """Builds an ``email.message.EmailMessage`` and gives it to ``send(message)``.

    ``send`` is yours (``smtplib.SMTP(...).send_message``, a queue, a test list);
    ``address(name)`` turns a recipient's name into an address (by default the name is
    the address). The idempotency key travels as the ``Message-ID`` and as the header
    ``Idempotency-Key``. ``received(key)``, if given, answers whether ``send`` already
    took a message with that key.
    """

    def __init__(
        self,
        send: Callable[[EmailMessage], object],
        *,
        sender: str,
        address: Callable[[str], str] | None = None,
        domain: str = "itsmcore.invalid",
        received: Callable[[str], bool] | None = None,
    ) -> None:
        self._send = _callable(send, "an e-mail channel's send")
        if not isinstance(sender, str) or "@" not in sender or any(c in sender for c in "\r\n"):
            raise DefinitionError(f"sender is an e-mail address, got {sender!r}")
        self.sender = sender
        self._address = (lambda name: name) if address is None else _callable(address, "address")
        if not isinstance(domain, str) or not domain or any(c in domain for c in "<>@\r\n "):
            raise DefinitionError(f"domain is a host name for Message-IDs, got {domain!r}")
        self.domain = domain
        self.received = _probe(received)

    def message(self, notification: Notification) -> EmailMessage:
        """The e-mail for ``notification``."""
        to = self._address(notification.recipient)
        if not isinstance(to, str) or "@" not in to or any(c in to for c in "\r\n"):
            raise ValidationError(
                f"no e-mail address for {notification.recipient!r} (address() gave {to!r})"
            )
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = notification.subject
        message["Message-ID"] = f"<{notification.key}@{self.domain}>"
        message["Idempotency-Key"] = notification.key
        message.set_content(notification.body)
        return message

    def __call__(self, notification: Notification) -> None:
        """Send the e-mail for ``notification``."""
        self._send(self.message(notification))


class WebhookChannel:
    """Builds a JSON document and gives it to ``post(url, body, headers)``.

    ``post`` is yours (``urllib.request``, ``httpx.post`` …); the body is UTF-8 JSON bytes
    with the notification's fields (the event's own as ``"data"``), and the headers carry
    ``Content-Type`` and the ``Idempotency-Key``.
    """

    def __init__(
        self,
        post: Callable[[str, bytes, dict[str, str]], object],
        *,
        url: str,
        received: Callable[[str], bool] | None = None,
    ) -> None:
        self._post = _callable(post, "a webhook channel's post")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise DefinitionError(f"url is an http(s) URL, got {url!r}")
        self.url = url
        self.received = _probe(received)

    @staticmethod
    def document(notification: Notification) -> dict[str, Any]:
        """The JSON-ready document posted for ``notification``."""
        n = notification
        return {
            "key": n.key, "event": n.event, "kind": n.kind, "id": n.record_id,
            "version": n.version, "at": n.at.isoformat(), "by": n.by,
            "recipient": n.recipient, "role": n.role, "subject": n.subject, "body": n.body,
            "data": json.loads(n.payload),
        }  # fmt: skip

    def __call__(self, notification: Notification) -> None:
        """Post the document for ``notification``."""
        body = json.dumps(self.document(notification), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": notification.key}
        self._post(self.url, body, headers)


# --------------------------------------------------------------------------- the dispatcher


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list | frozenset | set):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _names(found: object) -> list[str]:
    if found is None:
        return []
    if isinstance(found, str):
        return [found] if found.strip() else []
    if isinstance(found, Iterable):
        return sorted({n for n in found if isinstance(n, str) and n.strip()})
    raise ValidationError(f"recipients resolve to names, got {found!r}")


def notification_key(outbox_key: str, subscription: str, recipient: str) -> str:
    """A notification's idempotency key: a digest of its event, subscription and recipient."""
    text = json.dumps([outbox_key, subscription, recipient])
    return "n-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Dispatcher:
    """Subscriptions and the channels they name, checked together when defined.

    ``channels`` maps names to callables (``EmailChannel``, ``WebhookChannel``, or any
    function of a ``Notification``); a channel a subscription names must be there, and
    subscription names must be unique (they are part of every notification's key).
    """

    def __init__(
        self, *, channels: Mapping[str, Channel], subscriptions: Iterable[Subscription]
    ) -> None:
        if not isinstance(channels, Mapping):
            raise DefinitionError(f"channels maps names to channels, got {channels!r}")
        self.channels: dict[str, Channel] = {}
        for name, channel in channels.items():
            self.channels[_name(name, "channel")] = _callable(channel, f"channel {name!r}")
        if isinstance(subscriptions, Subscription) or not isinstance(subscriptions, Iterable):
            raise DefinitionError("subscriptions is a collection of Subscription")
        self.subscriptions: tuple[Subscription, ...] = tuple(subscriptions)
        seen: set[str] = set()
        for sub in self.subscriptions:
            if not isinstance(sub, Subscription):
                raise DefinitionError(f"subscriptions are Subscription, got {sub!r}")
            if sub.name in seen:
                raise DefinitionError(f"two subscriptions are named {sub.name!r}")
            seen.add(sub.name)
            if sub.channel not in self.channels:
                raise DefinitionError(
                    f"subscription {sub.name!r} sends through channel {sub.channel!r}, which "
                    f"is not one of the dispatcher's ({', '.join(self.channels) or 'none'})"
                )

    def probe(self, channel: str) -> Callable[[str], bool] | None:
        """The channel's ``received(key)``, if it has one."""
        found = getattr(self.channels[channel], "received", None)
        return found if callable(found) else None

    def wants(self, event: str) -> bool:
        """Whether any subscription takes events of type ``event``."""
        return any(event in sub.types for sub in self.subscriptions)

    def notifications(self, row: OutboxRow, record: Any) -> list[Notification]:
        """The notifications an outbox row makes, ``record`` being as the event left it.

        The same row and record always make the same notifications with the same keys.
        """
        event = record.history[row.version - 1]
        out: list[Notification] = []
        base: dict[str, str] | None = None
        for sub in self.subscriptions:
            if row.type not in sub.types:
                continue
            if base is None:
                base = _values(row, record, event)
            seen: set[str] = set()
            for entry in sub.recipients:
                role = entry if isinstance(entry, str) else getattr(entry, "__name__", "custom")
                resolve = ROLES[entry] if isinstance(entry, str) else entry
                for recipient in _names(resolve(record, event)):
                    if recipient in seen:
                        continue
                    seen.add(recipient)
                    key = notification_key(row.key, sub.name, recipient)
                    values = base | {"recipient": recipient, "role": role, "key": key}
                    subject, body = sub.template.render(values)
                    out.append(
                        Notification(
                            key=key,
                            outbox_key=row.key,
                            subscription=sub.name,
                            channel=sub.channel,
                            recipient=recipient,
                            role=role,
                            subject=subject,
                            body=body,
                            event=row.type,
                            kind=record.kind,
                            record_id=row.record_id,
                            version=row.version,
                            at=event.at,
                            by=event.by,
                            payload=row.payload,
                        )
                    )
        return out


def _values(row: OutboxRow, record: Any, event: Event) -> dict[str, str]:
    values = {f: _text(getattr(event, f)) for f in _fields(type(event))}
    for name in _fields(type(record)) - _RECORD_ONLY:
        values[name] = _text(getattr(record, name))
    values |= {
        "kind": record.kind, "id": row.record_id, "version": str(row.version),
        "event": row.type, "at": event.at.isoformat(), "by": event.by, "state": event.state,
    }  # fmt: skip
    return values


# --------------------------------------------------------------------------- dispatching


@attrs.frozen(kw_only=True)
class DispatchReport:
    """What one ``dispatch_pending`` call did."""

    handed: tuple[str, ...] = ()
    """Keys of the notifications handed to their channels (``redelivered`` among them)."""
    redelivered: tuple[str, ...] = ()
    """Keys found in doubt (a dispatcher died after claiming them) and handed over again."""
    confirmed: tuple[str, ...] = ()
    """Keys found in doubt that their channel said it had received: not handed again."""
    dispatched: tuple[str, ...] = ()
    """Outbox keys whose every notification is now handed over."""
    failed: tuple[tuple[str, str], ...] = ()
    """``(outbox key, error)`` of rows given back after a channel or the record failed."""
    deferred: tuple[str, ...] = ()
    """Outbox keys given back unread because an earlier event of their record failed."""


DEFAULT_LEASE: Final = timedelta(minutes=5)


class _Run:
    """One ``dispatch_pending`` call's state."""

    def __init__(self, store: Any, dispatcher: Dispatcher, token: str, now: int) -> None:
        self.store = store
        self.outbox: Outbox = store.outbox()
        self.dispatcher = dispatcher
        self.token = token
        self.now = now
        self.lists: dict[str, list[Any]] = {f.name: [] for f in attrs.fields(DispatchReport)}
        self.records: dict[tuple[str, str], Any] = {}

    def record_at(self, uow: Any, row: OutboxRow) -> Any:
        """The record as the row's event left it."""
        key = (row.kind, row.record_id)
        record = self.records.get(key)
        if record is None or record.version < row.version:
            try:
                repository = getattr(uow, row.kind)
            except AttributeError:
                raise ValidationError(
                    f"the outbox holds {row.kind} events but no such record kind is served"
                ) from None
            record = self.records[key] = repository.get(row.record_id)
        if record.version == row.version:
            return record
        return type(record).replay(record.history[: row.version])

    def hand_over(self, row: OutboxRow, note: Notification, state: str | None) -> str | None:
        """Hand ``note`` over unless it was; an error text if it failed."""
        outbox, lists = self.outbox, self.lists
        if state is None and not outbox.begin(note.key, row.key, self.token, self.now):
            # Someone else marked it since we read, or took the row over from us.
            state = outbox.deliveries([note.key]).get(note.key)
            if state is None:
                return "the claim on the row was taken over (its lease ran out)"
        if state == HANDED:
            return None
        if state is not None:  # in doubt: claimed by a dispatcher that did not finish
            probe = self.dispatcher.probe(note.channel)
            try:
                received = probe is not None and probe(note.key) is True
            except Exception as exc:  # noqa: BLE001 - user code: it cannot tell now
                return f"channel {note.channel!r} could not say: {type(exc).__name__}: {exc}"
            if received:
                outbox.handed(note.key, self.now)
                lists["confirmed"].append(note.key)
                return None
            lists["redelivered"].append(note.key)
        try:
            self.dispatcher.channels[note.channel](note)
        except Exception as exc:  # noqa: BLE001 - a channel is user code: any failure
            return f"channel {note.channel!r} refused {note.key}: {type(exc).__name__}: {exc}"
        outbox.handed(note.key, self.now)
        lists["handed"].append(note.key)
        return None

    def row(self, uow: Any, row: OutboxRow) -> str | None:
        """Hand over the row's notifications; an error text if one failed."""
        outbox, lists = self.outbox, self.lists
        if not self.dispatcher.wants(row.type):  # nobody subscribed: nothing to read
            outbox.finish(row.key, self.token, self.now)
            lists["dispatched"].append(row.key)
            return None
        try:
            notes = self.dispatcher.notifications(row, self.record_at(uow, row))
        except TransientError:
            raise  # the store is busy: the whole call is, and the lease gives the rows back
        except Exception as exc:  # noqa: BLE001 - the record cannot be read (corrupt, a kind
            # not served) or a recipient function of the user's failed: this row fails
            return f"{type(exc).__name__}: {exc}"
        states = outbox.deliveries([n.key for n in notes])
        for note in notes:
            error = self.hand_over(row, note, states.get(note.key))
            if error is not None:
                return error
        outbox.finish(row.key, self.token, self.now)
        lists["dispatched"].append(row.key)
        return None


def dispatch_pending(
    store: Any,
    dispatcher: Dispatcher,
    *,
    at: datetime,
    limit: int = 100,
    lease: timedelta = DEFAULT_LEASE,
) -> DispatchReport:
    """Hand the notifications of up to ``limit`` pending outbox rows to their channels.

    Rows are claimed for ``lease`` from ``at`` (no other dispatcher takes them meanwhile;
    one that died leaves them to whoever dispatches after the lease), taken oldest first,
    and each notification goes through two markers in the store: *claimed* before the
    channel is called, *handed* after it returned. A channel that raises leaves its row
    pending (retried next time, with the same keys); later events of the same record wait
    for it, so a record's notifications go out in order. A notification found *claimed*
    but not *handed* is in doubt: its channel's ``received(key)`` decides when it has one,
    otherwise it is handed over again with the same key.
    """
    if not isinstance(dispatcher, Dispatcher):
        raise ValidationError(f"dispatcher is a Dispatcher, got {type(dispatcher).__name__}")
    now = to_us(utc(at))
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"limit must be a whole number above 0, got {limit!r}")
    if not isinstance(lease, timedelta) or lease <= timedelta(0):
        raise ValidationError(f"lease must be a positive timedelta, got {lease!r}")
    outbox = getattr(store, "outbox", None)
    if not callable(outbox):
        raise ValidationError(f"{type(store).__name__} has no outbox; use an itsmcore store")
    run = _Run(store, dispatcher, uuid.uuid4().hex, now)
    rows = run.outbox.claim(run.token, now, now + to_us_delta(lease), limit)
    waiting: set[tuple[str, str]] = set()
    with store.unit_of_work() as uow:
        for row in rows:
            record = (row.kind, row.record_id)
            if record in waiting:
                run.outbox.release(row.key, run.token, None)
                run.lists["deferred"].append(row.key)
                continue
            error = run.row(uow, row)
            if error is not None:
                run.outbox.release(row.key, run.token, error[:1000])
                run.lists["failed"].append((row.key, error))
                waiting.add(record)
    return DispatchReport(**{name: tuple(items) for name, items in run.lists.items()})


def purge_dispatched(store: Any, *, before: datetime) -> int:
    """Delete the outbox rows dispatched before ``before``, and their markers; how many.

    Rows still pending are never touched, whatever their age.
    """
    outbox = getattr(store, "outbox", None)
    if not callable(outbox):
        raise ValidationError(f"{type(store).__name__} has no outbox; use an itsmcore store")
    return int(outbox().purge(to_us(utc(before))))


def to_us_delta(value: timedelta) -> int:
    """A duration in whole microseconds."""
    return value // timedelta(microseconds=1)
