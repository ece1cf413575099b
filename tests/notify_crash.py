"""Processes the notification crash tests kill: a committer and a dispatcher with a file channel.

Each runs in a spawned process and tells the parent it reached its kill point by setting a
``multiprocessing`` event, then waits there (``signal.pause``) to be killed with SIGKILL:
the parent never sleeps on the wall clock to find the moment.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from itsmcore import Incident
from itsmcore.notify import (
    Dispatcher,
    MessageTemplate,
    Notification,
    Subscription,
    dispatch_pending,
)
from itsmcore.storage import PostgresStore, SQLiteStore

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
LEASE = timedelta(minutes=5)
IDS = ("INC1", "INC2", "INC3")
PER_INCIDENT = 3  # assigned: the assignee and the group; resolved: the caller


def open_store(target: str) -> Any:
    return PostgresStore(target) if target.startswith("host=") else SQLiteStore(target)


def seed(target: str) -> None:
    """Open the incidents (openings go to no subscription)."""
    store = open_store(target)
    with store.unit_of_work() as uow:
        for record_id in IDS:
            uow.incidents.add(
                Incident.open(id=record_id, title=f"{record_id} down", caller=f"caller-{record_id}",
                              impact=2, urgency=2, at=T0, by="desk")
            )  # fmt: skip
        uow.commit()
    store.close()


def commit_then_wait(target: str, ready: Any) -> None:
    """Assign and resolve every incident, commit, then wait to be killed before dispatching."""
    store = open_store(target)
    with store.unit_of_work() as uow:
        for record_id in IDS:
            incident = uow.incidents.get(record_id)
            incident = incident.assign(group="network", assignee=f"sam-{record_id}",
                                       at=T0 + timedelta(minutes=5), by="desk")  # fmt: skip
            incident = incident.resolve(code="solution_provided", notes="restarted",
                                        at=T0 + timedelta(hours=1), by="sam")  # fmt: skip
            uow.incidents.save(incident)
        uow.commit()
    ready.set()
    signal.pause()  # killed here: committed, nothing dispatched


class FileChannel:
    """Appends each notification's key to a file, flushed and fsynced before it returns.

    ``stop`` = (n, "before" | "after"): on the n-th handover in this process, tell the
    parent and wait to be killed, before writing the key or after it is on disk.
    ``probe`` gives the channel ``received(key)``, read from the file.
    """

    def __init__(self, path: Path, ready: Any, stop: tuple[int, str] | None, probe: bool) -> None:
        self.path = path
        self.ready = ready
        self.stop = stop
        self.count = 0
        if probe:
            self.received = self._received

    def _received(self, key: str) -> bool:
        return self.path.exists() and key in self.path.read_text().split()

    def __call__(self, notification: Notification) -> None:
        self.count += 1
        if self.stop == (self.count, "before"):
            self.ready.set()
            signal.pause()
        with self.path.open("a") as log:
            log.write(notification.key + "\n")
            log.flush()
            os.fsync(log.fileno())
        if self.stop == (self.count, "after"):
            self.ready.set()
            signal.pause()


def dispatcher(channel: Any) -> Dispatcher:
    body = MessageTemplate("$id $event", "Hello $recipient, $title")
    return Dispatcher(
        channels={"file": channel},
        subscriptions=[
            Subscription("assigned", events=["incident.assigned"],
                         recipients=["assignee", "group"], channel="file", template=body),
            Subscription("resolved", events=["incident.resolved"], recipients=["caller"],
                         channel="file", template=body),
        ],
    )  # fmt: skip


def dispatch(
    target: str, log: str, ready: Any, round_: int, stop: tuple[int, str] | None, probe: bool
) -> None:
    """Dispatch everything pending at ``T0 + round * lease`` (past every earlier claim)."""
    store = open_store(target)
    channel = FileChannel(Path(log), ready, stop, probe)
    while dispatch_pending(store, dispatcher(channel), at=T0 + round_ * LEASE, limit=2).dispatched:
        pass
    ready.set()
