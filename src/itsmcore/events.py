"""History events: the immutable facts a record's history is made of.

Every change to a record appends exactly one event. An event type is a frozen class with a
stable ``type`` string and a ``schema_version`` (so stored history stays readable by later
releases), the instant it happened (``at``, stored in UTC), the actor (``by``) and the state
the record was in afterwards (``state``), plus its own data. Event types register themselves
by ``type``, so the storage layer can turn a stored row back into the right class.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import attrs

from itsmcore._time import require_aware
from itsmcore.errors import DefinitionError, ValidationError

__all__ = ["Event", "StateChanged", "event_type", "event_types", "utc"]

_REGISTRY: dict[str, type[Event]] = {}


def utc(value: datetime) -> datetime:
    """``value`` in UTC; ``ValidationError`` if it is naive or not a datetime."""
    if isinstance(value, datetime) and value.tzinfo is UTC:
        return value  # already converted (records convert once, then build the event)
    return require_aware(value, "at").astimezone(UTC)


def _actor(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"by= must name who acted (a non-empty string), got {value!r}")
    if len(value) > 255 or "\x00" in value:
        raise ValidationError(f"by= must be a name of at most 255 characters, got {value[:40]!r}")
    return value


@attrs.frozen(kw_only=True)
class Event:
    """Base of every history event.

    Subclasses set the class variables ``type`` (stable, e.g. ``"incident.resolved"``, unique
    across every module) and ``schema_version`` (the version of their fields, starting at 1;
    a class that raises it provides ``upcast(data, version)`` for older stored rows).
    """

    type: ClassVar[str] = "event"
    schema_version: ClassVar[int] = 1

    at: datetime = attrs.field(converter=utc)
    """When it happened (UTC)."""
    by: str = attrs.field(converter=_actor)
    """Who did it: a person, a group, or a system such as ``"auto-close"``."""
    state: str = attrs.field(converter=str)
    """The record's lifecycle state after the event, as a plain string."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("type")
        if not isinstance(name, str):
            return  # an intermediate base class without a type of its own
        previous = _REGISTRY.get(name)
        # attrs rebuilds a slotted class, so the same definition registers twice: allow that,
        # and only that (the same module and name), never a second class taking the string.
        if previous is not None and _origin(previous) != _origin(cls):
            raise DefinitionError(
                f"event type {name!r} of {_origin(cls)} is already used by {_origin(previous)}; "
                "give each event class its own type string"
            )
        _REGISTRY[name] = cls


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def event_types() -> dict[str, type[Event]]:
    """Every registered event class by its ``type`` string."""
    return dict(_REGISTRY)


def event_type(name: str) -> type[Event]:
    """The event class registered under ``name`` (``ValidationError`` if unknown)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValidationError(f"unknown event type {name!r}; known types: {known}") from None


@attrs.frozen(kw_only=True)
class StateChanged(Event):
    """A trigger of a customised workflow fired through the generic ``fire(...)``.

    Typed verbs record their own event types; this one records triggers that only a
    vendor's workflow knows (``"approve"``, ``"request_info"`` …) with their free-form data.
    """

    type: ClassVar[str] = "state_changed"

    trigger: str
    source: str
    data: tuple[tuple[str, str], ...] = ()
    """Extra context as sorted ``(key, value)`` string pairs, so the event stays hashable."""
