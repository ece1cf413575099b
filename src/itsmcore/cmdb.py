"""The service model, stored: CIs, business services and relationships as records.

Each is a record on the engine of :mod:`itsmcore.record`, with its own kind in every store
(``uow.cis``, ``uow.services``, ``uow.relationships``), a history of revisions and a
retirement: ``CIRecord.register(ci, at=, by=)`` stores a :class:`ConfigurationItem`,
``record.revise(ci, at=, by=)`` replaces its fields, ``record.retire(reason=, at=, by=)``
takes it out of the model. :func:`model_from_records` builds the
:class:`~itsmcore.service.ServiceModel` of the active ones.

Attribute values are stored as text; a service's hours of service are stored by name and
resolved from the calendars the caller passes (calendars are definitions, not data).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self

import attrs

from itsmcore.errors import ValidationError
from itsmcore.events import Event
from itsmcore.record import Column, Opened, Record, applies, label, state_of, text, verb
from itsmcore.service import (
    BusinessService,
    CIClass,
    ConfigurationItem,
    Relationship,
    RelType,
    ServiceModel,
)
from itsmcore.workflow import ACTIVE, CANCELED, Transition, Workflow

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from itsmcore.calendar import BusinessCalendar

__all__ = [
    "CIRecord",
    "RelationshipRecord",
    "ServiceRecord",
    "model_from_records",
]


class ItemState(StrEnum):
    """A stored CI, service or relationship is in the model until retired."""

    ACTIVE = "active"
    RETIRED = "retired"


def _workflow(name: str, *, revisable: bool = True) -> Workflow:
    revise = (Transition("revise", ItemState.ACTIVE),) if revisable else ()
    return Workflow(
        name=name,
        states=tuple(ItemState),
        initial=ItemState.ACTIVE,
        terminal=(ItemState.RETIRED,),
        transitions=(*revise, Transition("retire", ItemState.ACTIVE, ItemState.RETIRED)),
        tags={ACTIVE: (ItemState.ACTIVE,), CANCELED: (ItemState.RETIRED,)},
    )


@attrs.frozen(kw_only=True)
class ItemRetired(Event):
    """Taken out of the service model (each kind records its own subclass)."""

    reason: str


@attrs.frozen(kw_only=True)
class CIRetired(ItemRetired):
    """A CI left the model."""

    type: ClassVar[str] = "ci.retired"


@attrs.frozen(kw_only=True)
class ServiceRetired(ItemRetired):
    """A business service left the model."""

    type: ClassVar[str] = "business_service.retired"


@attrs.frozen(kw_only=True)
class RelationshipRetired(ItemRetired):
    """A relationship left the model."""

    type: ClassVar[str] = "ci_relationship.retired"


def _text_attributes(pairs: Iterable[tuple[str, Any]]) -> tuple[tuple[str, str], ...]:
    return tuple((label(k, "attribute"), text(str(v), k)) for k, v in pairs)


# --------------------------------------------------------------------------- CIs


@attrs.frozen(kw_only=True)
class CIRegistered(Opened):
    """A configuration item entered the model."""

    type: ClassVar[str] = "ci.registered"
    name: str
    ci_class: CIClass
    owner: str | None
    criticality: int | None
    min_up: int | None
    attributes: tuple[tuple[str, str], ...]


@attrs.frozen(kw_only=True)
class CIRevised(Event):
    """The CI's fields were replaced."""

    type: ClassVar[str] = "ci.revised"
    name: str
    ci_class: CIClass
    owner: str | None
    criticality: int | None
    min_up: int | None
    attributes: tuple[tuple[str, str], ...]


def _ci_fields(ci: ConfigurationItem) -> dict[str, Any]:
    if not isinstance(ci, ConfigurationItem):
        raise ValidationError(f"expected a ConfigurationItem, got {type(ci).__name__}")
    return {
        "name": ci.name, "ci_class": ci.ci_class, "owner": ci.owner,
        "criticality": ci.criticality, "min_up": ci.min_up,
        "attributes": _text_attributes(ci.attributes),
    }  # fmt: skip


@attrs.frozen(kw_only=True, slots=False)
class CIRecord(Record):
    """A stored configuration item, with the history of its revisions."""

    kind: ClassVar[str] = "ci"
    state_enum: ClassVar[type[StrEnum]] = ItemState
    default_workflow: ClassVar[Workflow] = _workflow("ci")
    indexed: ClassVar[tuple[Column, ...]] = (
        Column("state", str, parse=state_of("ci")),
        Column("ci_class", str),
        Column("owner", str),
    )

    name: str
    ci_class: CIClass
    owner: str | None = None
    criticality: int | None = None
    min_up: int | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def register(cls, ci: ConfigurationItem, *, at: datetime, by: str) -> Self:
        """Store ``ci`` (its id is the record's)."""
        workflow = cls.default_workflow
        event = CIRegistered(at=at, by=by, state=workflow.initial, workflow=workflow.name,
                             id=ci.id, **_ci_fields(ci))  # fmt: skip
        return cls._opened(event, workflow)

    @verb
    def revise(self, ci: ConfigurationItem, *, at: datetime, by: str) -> Self:
        """Replace the CI's fields with ``ci``'s (same id)."""
        if ci.id != self.id:
            raise ValidationError(f"{self.id} cannot be revised from {ci.id}")
        return self._do("revise", CIRevised, at, by, **_ci_fields(ci))

    @verb
    def retire(self, *, reason: str, at: datetime, by: str) -> Self:
        """Take it out of the model (its relationships go with it)."""
        return self._do("retire", CIRetired, at, by, reason=text(reason, "reason"))

    def value(self) -> ConfigurationItem:
        """The configuration item as the service model holds it."""
        return ConfigurationItem(self.id, self.name, self.ci_class, self.owner,
                                 self.criticality, self.min_up, self.attributes)  # fmt: skip

    @applies(CIRevised, sets=("name", "ci_class", "owner", "criticality", "min_up", "attributes"))
    def _on_revised(self, e: CIRevised) -> Mapping[str, Any]:
        return {k: getattr(e, k) for k in ("name", "ci_class", "owner", "criticality", "min_up",
                                           "attributes")}  # fmt: skip

    @applies(CIRetired, sets=())
    def _on_retired(self, _e: CIRetired) -> Mapping[str, Any]:
        return _NOTHING


_NOTHING: Final[Mapping[str, Any]] = {}


# --------------------------------------------------------------------------- services


@attrs.frozen(kw_only=True)
class ServiceRegistered(Opened):
    """A business service entered the model."""

    type: ClassVar[str] = "business_service.registered"
    name: str
    criticality: int
    owner: str | None
    users: int
    hours: str | None


@attrs.frozen(kw_only=True)
class ServiceRevised(Event):
    """The service's fields were replaced."""

    type: ClassVar[str] = "business_service.revised"
    name: str
    criticality: int
    owner: str | None
    users: int
    hours: str | None


def _service_fields(service: BusinessService, hours: str | None) -> dict[str, Any]:
    if not isinstance(service, BusinessService):
        raise ValidationError(f"expected a BusinessService, got {type(service).__name__}")
    if (service.hours is None) != (hours is None):
        raise ValidationError(f"{service.id}: name its hours of service (hours=) to store them")
    name = None if hours is None else label(hours, "hours")
    return {"name": service.name, "criticality": service.criticality, "owner": service.owner,
            "users": service.users, "hours": name}  # fmt: skip


@attrs.frozen(kw_only=True, slots=False)
class ServiceRecord(Record):
    """A stored business service; its hours of service by the calendar's name."""

    kind: ClassVar[str] = "business_service"
    state_enum: ClassVar[type[StrEnum]] = ItemState
    default_workflow: ClassVar[Workflow] = _workflow("business_service")
    indexed: ClassVar[tuple[Column, ...]] = (
        Column("state", str, parse=state_of("business_service")),
        Column("criticality", int),
    )

    name: str
    criticality: int
    owner: str | None = None
    users: int = 0
    hours: str | None = None

    @classmethod
    def register(
        cls, service: BusinessService, *, at: datetime, by: str, hours: str | None = None
    ) -> Self:
        """Store ``service``; ``hours`` names its calendar (required when it has one)."""
        workflow = cls.default_workflow
        event = ServiceRegistered(at=at, by=by, state=workflow.initial, workflow=workflow.name,
                                  id=service.id, **_service_fields(service, hours))  # fmt: skip
        return cls._opened(event, workflow)

    @verb
    def revise(
        self, service: BusinessService, *, at: datetime, by: str, hours: str | None = None
    ) -> Self:
        """Replace the service's fields with ``service``'s (same id)."""
        if service.id != self.id:
            raise ValidationError(f"{self.id} cannot be revised from {service.id}")
        return self._do("revise", ServiceRevised, at, by, **_service_fields(service, hours))

    @verb
    def retire(self, *, reason: str, at: datetime, by: str) -> Self:
        """Take it out of the model."""
        return self._do("retire", ServiceRetired, at, by, reason=text(reason, "reason"))

    def value(self, calendars: Mapping[str, BusinessCalendar]) -> BusinessService:
        """The service as the model holds it, its hours from ``calendars``."""
        if self.hours is not None and self.hours not in calendars:
            raise ValidationError(f"service {self.id}: no calendar named {self.hours!r}")
        hours = None if self.hours is None else calendars[self.hours]
        return BusinessService(self.id, self.name, self.criticality, self.owner, self.users,
                               hours)  # fmt: skip

    @applies(ServiceRevised, sets=("name", "criticality", "owner", "users", "hours"))
    def _on_revised(self, e: ServiceRevised) -> Mapping[str, Any]:
        return {k: getattr(e, k) for k in ("name", "criticality", "owner", "users", "hours")}

    @applies(ServiceRetired, sets=())
    def _on_retired(self, _e: ServiceRetired) -> Mapping[str, Any]:
        return _NOTHING


# --------------------------------------------------------------------------- relationships


@attrs.frozen(kw_only=True)
class RelationshipRegistered(Opened):
    """A relationship entered the model."""

    type: ClassVar[str] = "ci_relationship.registered"
    source: str
    rel_type: RelType
    target: str


@attrs.frozen(kw_only=True, slots=False)
class RelationshipRecord(Record):
    """A stored relationship; its id is ``source|type|target``."""

    kind: ClassVar[str] = "ci_relationship"
    state_enum: ClassVar[type[StrEnum]] = ItemState
    default_workflow: ClassVar[Workflow] = _workflow("ci_relationship", revisable=False)
    indexed: ClassVar[tuple[Column, ...]] = (
        Column("state", str, parse=state_of("ci_relationship")),
        Column("source", str),
        Column("target", str),
    )

    source: str
    rel_type: RelType
    target: str

    @classmethod
    def register(cls, relationship: Relationship, *, at: datetime, by: str) -> Self:
        """Store ``relationship``."""
        if not isinstance(relationship, Relationship):
            raise ValidationError(f"expected a Relationship, got {type(relationship).__name__}")
        workflow = cls.default_workflow
        r = relationship
        event = RelationshipRegistered(
            at=at, by=by, state=workflow.initial, workflow=workflow.name,
            id=f"{r.source}|{r.type}|{r.target}", source=r.source, rel_type=r.type,
            target=r.target,
        )  # fmt: skip
        return cls._opened(event, workflow)

    @verb
    def retire(self, *, reason: str, at: datetime, by: str) -> Self:
        """Take it out of the model."""
        return self._do("retire", RelationshipRetired, at, by, reason=text(reason, "reason"))

    def value(self) -> Relationship:
        """The relationship as the model holds it."""
        return Relationship(self.source, self.rel_type, self.target)

    @applies(RelationshipRetired, sets=())
    def _on_retired(self, _e: RelationshipRetired) -> Mapping[str, Any]:
        return _NOTHING


def model_from_records(
    *,
    cis: Iterable[CIRecord] = (),
    services: Iterable[ServiceRecord] = (),
    relationships: Iterable[RelationshipRecord] = (),
    calendars: Mapping[str, BusinessCalendar] | None = None,
) -> ServiceModel:
    """The service model of the active records.

    Retired records are left out, and so are relationships that touch a retired node.
    """
    nodes: list[Any] = [c.value() for c in cis if c.state is ItemState.ACTIVE]
    nodes += [s.value(calendars or {}) for s in services if s.state is ItemState.ACTIVE]
    known = {n.id for n in nodes}
    rels = [
        r.value()
        for r in relationships
        if r.state is ItemState.ACTIVE and r.source in known and r.target in known
    ]
    return ServiceModel(nodes, rels)
