"""A small web service on itsmcore: plain WSGI, JSON in and out, versions for edits."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from itsmcore import (
    ConcurrencyError,
    DuplicateIdError,
    Incident,
    InvalidTransitionError,
    NotFoundError,
    ValidationError,
)
from itsmcore.storage import retry

if TYPE_CHECKING:
    from datetime import datetime

Respond = Callable[[str, list[tuple[str, str]]], object]

# How the library's errors read in HTTP: the caller's mistake, a clash with the record's state
# or with someone else's edit, or no such record.
STATUS = [
    (NotFoundError, "404 Not Found"),
    (ConcurrencyError, "409 Conflict"),
    (DuplicateIdError, "409 Conflict"),
    (InvalidTransitionError, "409 Conflict"),
    (ValidationError, "422 Unprocessable Entity"),
]


def make_app(store: Any, now: Callable[[], datetime]) -> Callable[..., Iterable[bytes]]:
    """The WSGI application: POST /incidents, GET and PATCH /incidents/<id>."""

    def app(environ: dict[str, Any], respond: Respond) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"].strip("/").split("/")
        user = environ.get("REMOTE_USER", "web")
        try:
            body = json.loads(environ["wsgi.input"].read() or b"{}")
            if method == "POST" and path == ["incidents"]:
                status, data = "201 Created", create(store, body, now(), user)
            elif method == "GET" and len(path) == 2:
                with store.unit_of_work() as uow:
                    status, data = "200 OK", view(uow.incidents.get(path[1]))
            elif method == "PATCH" and len(path) == 2:
                version = int(environ.get("HTTP_IF_MATCH", "0"))
                status, data = "200 OK", edit(store, path[1], version, body, at=now(), user=user)
            else:
                status, data = "405 Method Not Allowed", {"error": f"{method} {path}"}
        except tuple(kind for kind, _ in STATUS) as exc:
            status = next(code for kind, code in STATUS if isinstance(exc, kind))
            data = {"error": str(exc)}
        payload = json.dumps(data).encode()
        respond(status, [("Content-Type", "application/json")])
        return [payload]

    return app


def view(incident: Incident) -> dict[str, Any]:
    """What a client sees: the current fields, and the version to send back with an edit."""
    return {
        "id": incident.id,
        "version": incident.version,
        "state": str(incident.state),
        "priority": str(incident.priority),
        "title": incident.title,
        "assignment_group": incident.assignment_group,
    }


def create(store: Any, body: dict[str, Any], at: datetime, user: str) -> dict[str, Any]:
    def log(uow: Any) -> Incident:
        incident = Incident.open(
            id=uow.incidents.new_id(), title=body.get("title"), caller=user,
            impact=body.get("impact", 3), urgency=body.get("urgency", 3),
            channel="portal", at=at, by=user,
        )  # fmt: skip
        uow.incidents.add(incident)
        return incident

    return view(retry(store, log))


def edit(
    store: Any, incident_id: str, version: int, body: dict[str, Any], *, at: datetime, user: str
) -> dict[str, Any]:
    """Apply a form's edit to the record as the client saw it (at ``version``).

    The store takes it only if nobody changed the record since: otherwise
    ``ConcurrencyError`` (409), and the client reloads.
    """
    with store.unit_of_work() as uow:
        history = uow.incidents.history(incident_id)
        if not 0 < version <= len(history):
            raise ValidationError(f"If-Match must be a version of {incident_id} (1-{len(history)})")
        seen = Incident.replay(history[:version])  # the record the client's form showed
        changed = seen
        if "title" in body:
            changed = changed.update(title=body["title"], at=at, by=user)
        if "group" in body:
            changed = changed.assign(group=body["group"], at=at, by=user)
        if "resolve" in body:
            changed = changed.resolve(code=body["resolve"], notes=body["notes"], at=at, by=user)
        uow.incidents.save(changed)
        uow.commit()
    return view(changed)
