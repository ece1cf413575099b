"""The service model: configuration items, business services, what depends on what.

A CMDB-lite that lets the practices reason about what a failure means to the business.
:class:`ServiceModel` holds :class:`ConfigurationItem` and :class:`BusinessService` nodes and
typed, directed :class:`Relationship` edges, and answers:

* :meth:`ServiceModel.impacted_services`: every business service that loses something it
  needs when CIs fail, with the path that explains it, and the redundant clusters that held;
* :meth:`ServiceModel.restore_order`: the failed CIs in the order whose restoration gives
  the most back to the business at an instant, each with its reasons;
* :meth:`ServiceModel.cycles`: dependency cycles (reported, never fatal or endless);
* :meth:`ServiceModel.related`, :meth:`ServiceModel.suggest_impact` for the practices.

**Which way impact flows.** ``A depends_on B``, ``A runs_on B`` and ``A connected_by B``:
when B fails, A is impacted. ``A contains B``: when the container A fails, B is. ``A
member_of C``: C is a cluster; it stays up while at least ``min_up`` of its members are up
(``C.min_up``, 1 by default). Everything else follows transitively.

The model is immutable; :meth:`ServiceModel.changed` returns a new one and
:meth:`ServiceModel.diff` says what differs. Traversals are breadth-first over integer
indexes: linear in the part of the graph they touch.
"""

from __future__ import annotations

import csv
import math
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import attrs

from itsmcore._time import require_aware
from itsmcore.calendar import BusinessCalendar
from itsmcore.errors import ValidationError
from itsmcore.priority import Impact
from itsmcore.record import label
from itsmcore.sla import SLADefinition

__all__ = [
    "BusinessService",
    "CIClass",
    "ConfigurationItem",
    "ImpactReport",
    "ModelDiff",
    "RelType",
    "Relationship",
    "RestoreStep",
    "RestoreWeights",
    "ServiceImpact",
    "ServiceModel",
]


class CIClass(StrEnum):
    """What kind of thing a configuration item is."""

    SERVER = "server"
    APPLICATION = "application"
    DATABASE = "database"
    NETWORK_DEVICE = "network_device"
    CLUSTER = "cluster"
    CLOUD_RESOURCE = "cloud_resource"
    STORAGE = "storage"
    OTHER = "other"


class RelType(StrEnum):
    """ServiceNow's common relationship types, read from source to target."""

    DEPENDS_ON = "depends_on"
    RUNS_ON = "runs_on"
    CONNECTED_BY = "connected_by"
    CONTAINS = "contains"
    MEMBER_OF = "member_of"


def _criticality(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        raise ValidationError(f"criticality is 1 (most critical) to 4, got {value!r}")
    return value


def _ci_class(value: object) -> CIClass:
    if isinstance(value, CIClass):
        return value
    try:
        return CIClass(str(value).strip().lower().replace(" ", "_"))
    except ValueError:
        allowed = ", ".join(c.value for c in CIClass)
        raise ValidationError(f"unknown CI class {value!r}; use one of: {allowed}") from None


def _rel_type(value: object) -> RelType:
    if isinstance(value, RelType):
        return value
    text = str(value).strip().lower().replace(" ", "_")
    aliases = {"depends_on::used_by": "depends_on", "runs_on::runs": "runs_on",
               "members_of": "member_of", "member_of::members": "member_of"}  # fmt: skip
    try:
        return RelType(aliases.get(text, text))
    except ValueError:
        allowed = ", ".join(c.value for c in RelType)
        raise ValidationError(
            f"unknown relationship type {value!r}; use one of: {allowed}"
        ) from None


def _attributes(
    value: Mapping[str, Any] | Iterable[tuple[str, Any]],
) -> tuple[tuple[str, Any], ...]:
    pairs = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), v) for k, v in pairs))


def _id(value: object) -> str:
    return label(value, "id")


def _optional_criticality(value: object) -> int | None:
    return None if value is None else _criticality(value)


def _min_up(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"min_up is a whole number from 1, got {value!r}")
    return value


@attrs.frozen
class ConfigurationItem:
    """Something managed to deliver a service: a server, an application, a database ..."""

    id: str = attrs.field(converter=_id)
    name: str = ""
    ci_class: CIClass = attrs.field(default=CIClass.OTHER, converter=_ci_class)
    owner: str | None = None
    criticality: int | None = attrs.field(default=None, converter=_optional_criticality)
    min_up: int | None = attrs.field(default=None, converter=_min_up)
    """For a cluster: how many members must be up for it to be up (1 when it has members)."""
    attributes: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_attributes)


@attrs.frozen
class BusinessService:
    """What the business consumes: the shop, payroll, e-mail."""

    id: str = attrs.field(converter=_id)
    name: str = ""
    criticality: int = attrs.field(default=3, converter=_criticality)
    """1 most critical to 4 least."""
    owner: str | None = None
    users: int = 0
    hours: BusinessCalendar | None = attrs.field(default=None, eq=False)
    """Its hours of service (``None``: always in service)."""
    slas: tuple[SLADefinition, ...] = attrs.field(default=(), eq=False, converter=tuple)

    def in_service(self, at: datetime) -> bool:
        """Whether ``at`` falls in its hours of service."""
        return self.hours is None or self.hours.is_open(at)


@attrs.frozen
class Relationship:
    """``source`` ``type`` ``target``: app-01 runs_on srv-01."""

    source: str = attrs.field(converter=_id)
    type: RelType = attrs.field(converter=_rel_type)
    target: str = attrs.field(converter=_id)


@attrs.frozen
class Step:
    """One node on an explanation path, and why it is down (or held)."""

    id: str
    note: str = ""

    def __str__(self) -> str:
        return f"{self.id} ({self.note})" if self.note else self.id


@attrs.frozen
class ServiceImpact:
    """A business service that is down, and the path from it to a failed CI."""

    service: BusinessService
    path: tuple[Step, ...]

    def explain(self) -> str:
        """``shop → app-02 → db-cluster (0 of 2 up) → db-01 (failed)``."""
        return " → ".join(map(str, self.path))


@attrs.frozen
class ImpactReport:
    """What a set of failed CIs takes down."""

    failed: tuple[str, ...]
    services: tuple[ServiceImpact, ...]
    """The business services down, most critical first."""
    down: frozenset[str]
    """Every node down: the failed CIs and all that needs them."""
    held: tuple[Step, ...]
    """Clusters with failed members that are still up (``db-cluster (1 of 2 up: holds)``)."""


@attrs.frozen
class RestoreWeights:
    """How the restore order weighs what a restoration gives back; the caller's to set."""

    criticality: float = 10.0
    """Per restored service, times (5 - its criticality): 40 for a criticality-1 service."""
    out_of_hours: float = 0.1
    """The factor on a restored service's value outside its hours of service."""
    users: float = 0.01
    """Per user of a restored service."""
    sla: float = 20.0
    """For the most urgent linked incident: this divided by (1 + hours to its breach)."""
    unblocks: float = 15.0
    """Per other failed CI that needs this one (upstream first)."""
    shared: float = 0.5
    """The share of a service's value for a CI that is one of several ways back to it."""


@attrs.frozen
class RestoreStep:
    """One failed CI in the restore order, with what restoring it gives back and why."""

    ci: str
    score: float
    restores: tuple[str, ...]
    """The business services that need it: they come back with it, or cannot without it."""
    helps: tuple[str, ...]
    """The business services it is one of several ways back to (a cluster's member)."""
    unblocks: tuple[str, ...]
    """The other failed CIs that need it."""
    reasons: tuple[str, ...]


@attrs.frozen
class ModelDiff:
    """What differs between two service models (``new`` relative to ``old``)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    """Nodes present in both whose fields differ."""
    added_relationships: tuple[Relationship, ...]
    removed_relationships: tuple[Relationship, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.added_relationships
                    or self.removed_relationships)  # fmt: skip


Node = ConfigurationItem | BusinessService
_NEEDS: Final = frozenset({RelType.DEPENDS_ON, RelType.RUNS_ON, RelType.CONNECTED_BY})


class ServiceModel:
    """CIs, business services and their relationships; immutable once built.

    Build one with :meth:`build` (records) or :meth:`from_rows` (dicts, CSV files or
    DataFrames). Unknown ids and self-loops are a ``ValidationError``; cycles are allowed
    and reported by :meth:`cycles`.
    """

    __slots__ = ("_dependents", "_ids", "_index", "_members", "_needs", "_neighbours",
                 "_nodes", "_relationships")  # fmt: skip

    def __init__(self, nodes: Iterable[Node], relationships: Iterable[Relationship]) -> None:
        self._nodes: tuple[Node, ...] = tuple(nodes)
        self._ids: tuple[str, ...] = tuple(n.id for n in self._nodes)
        self._index: dict[str, int] = {}
        for i, node in enumerate(self._nodes):
            if not isinstance(node, (ConfigurationItem, BusinessService)):
                raise ValidationError(f"a model holds CIs and services, not {node!r}")
            if node.id in self._index:
                raise ValidationError(f"two nodes have the id {node.id!r}")
            self._index[node.id] = i
        self._relationships: tuple[Relationship, ...] = tuple(dict.fromkeys(relationships))
        self._link()

    def _link(self) -> None:
        """Index the relationships: who needs whom, cluster members, neighbours."""
        n = len(self._nodes)
        # dependents[x]: (y, is_member): y needs x (or x is a member of cluster y).
        self._dependents: list[list[tuple[int, bool]]] = [[] for _ in range(n)]
        self._members = [0] * n
        self._neighbours: list[list[int]] = [[] for _ in range(n)]
        index = self._index
        for rel in self._relationships:
            source, target = index.get(rel.source), index.get(rel.target)
            if source is None or target is None:
                missing = rel.source if source is None else rel.target
                raise ValidationError(f"relationship {rel.source} {rel.type} {rel.target}: "
                                      f"unknown id {missing!r}")  # fmt: skip
            if source == target:
                raise ValidationError(f"{rel.source} cannot {rel.type} itself")
            if rel.type in _NEEDS:
                self._dependents[target].append((source, False))
            elif rel.type is RelType.CONTAINS:
                self._dependents[source].append((target, False))
            else:  # member_of
                self._dependents[source].append((target, True))
                self._members[target] += 1
            self._neighbours[source].append(target)
            self._neighbours[target].append(source)
        self._needs: list[list[int]] = [[] for _ in range(n)]
        for x, deps in enumerate(self._dependents):
            for y, _member in deps:
                self._needs[y].append(x)
        for i, count in enumerate(self._members):
            if count and self._min_up(i) > count:
                raise ValidationError(
                    f"cluster {self._ids[i]} needs {self._min_up(i)} members up but has {count}"
                )

    # ----------------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        *,
        cis: Iterable[ConfigurationItem] = (),
        services: Iterable[BusinessService] = (),
        relationships: Iterable[Relationship] = (),
    ) -> ServiceModel:
        """A model from records."""
        return cls((*cis, *services), relationships)

    @classmethod
    def from_rows(
        cls,
        *,
        cis: Any = (),
        services: Any = (),
        relationships: Any = (),
        hours: Mapping[str, BusinessCalendar] | None = None,
    ) -> ServiceModel:
        """A model from plain rows: iterables of dicts, CSV file paths, or DataFrames.

        CI rows: ``id``, ``name``, ``class``, ``owner``, ``criticality``, ``min_up``, and any
        other column as an attribute. Service rows: ``id``, ``name``, ``criticality``,
        ``owner``, ``users``, ``hours`` (a key of ``hours``). Relationship rows: ``source``,
        ``type``, ``target``. Empty cells are missing values.
        """
        calendars = dict(hours or {})
        return cls(
            (
                *(_ci_row(row) for row in _rows(cis)),
                *(_service_row(row, calendars) for row in _rows(services)),
            ),
            (
                Relationship(row["source"], row["type"], row["target"])
                for row in _rows(relationships)
            ),
        )

    def changed(
        self,
        *,
        add: Iterable[Node] = (),
        remove: Iterable[str] = (),
        relate: Iterable[Relationship] = (),
        unrelate: Iterable[Relationship] = (),
    ) -> ServiceModel:
        """A new model: nodes added or replaced (same id) or removed, relationships too.

        Removing a node removes its relationships. This model is left as it is.
        """
        gone = set(remove)
        unknown = sorted(gone - set(self._index))
        if unknown:
            raise ValidationError(f"cannot remove unknown ids: {', '.join(unknown)}")
        replaced = {n.id: n for n in add}
        nodes = [replaced.pop(n.id, n) for n in self._nodes if n.id not in gone]
        nodes += replaced.values()
        cut = set(unrelate)
        rels = [r for r in self._relationships
                if r not in cut and r.source not in gone and r.target not in gone]  # fmt: skip
        return ServiceModel(nodes, [*rels, *relate])

    def diff(self, old: ServiceModel) -> ModelDiff:
        """What this model adds, removes and changes relative to ``old``."""
        mine, theirs = set(self._index), set(old._index)
        both = sorted(mine & theirs)
        changed = tuple(i for i in both if self.node(i) != old.node(i)
                        or _hours_id(self.node(i)) != _hours_id(old.node(i)))  # fmt: skip
        new_rels, old_rels = set(self._relationships), set(old._relationships)
        return ModelDiff(
            added=tuple(sorted(mine - theirs)),
            removed=tuple(sorted(theirs - mine)),
            changed=changed,
            added_relationships=tuple(r for r in self._relationships if r not in old_rels),
            removed_relationships=tuple(r for r in old._relationships if r not in new_rels),
        )

    # ----------------------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def node(self, node_id: str) -> Node:
        """The CI or service with this id (``ValidationError`` if unknown)."""
        return self._nodes[self._at(node_id)]

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Every CI and service, in the order given."""
        return self._nodes

    @property
    def services(self) -> tuple[BusinessService, ...]:
        """Every business service."""
        return tuple(n for n in self._nodes if isinstance(n, BusinessService))

    @property
    def relationships(self) -> tuple[Relationship, ...]:
        """Every relationship, as given (duplicates dropped)."""
        return self._relationships

    def related(self, node_id: str) -> tuple[str, ...]:
        """The nodes directly related to this one, either way: its parents and children."""
        return tuple(dict.fromkeys(self._ids[j] for j in self._neighbours[self._at(node_id)]))

    def upstream(self, node_id: str) -> tuple[str, ...]:
        """This node and everything it needs, directly or not (redundancy aside)."""
        start = self._at(node_id)
        seen, work = {start}, [start]
        while work:
            for x in self._needs[work.pop()]:
                if x not in seen:
                    seen.add(x)
                    work.append(x)
        return tuple(self._ids[i] for i in seen)

    def _at(self, node_id: str) -> int:
        found = self._index.get(node_id)
        if found is None:
            raise ValidationError(f"unknown CI or service {node_id!r}")
        return found

    def _min_up(self, i: int) -> int:
        node = self._nodes[i]
        need = node.min_up if isinstance(node, ConfigurationItem) else None
        return need if need is not None else 1

    # ----------------------------------------------------------------------- impact

    def _spread(self, failed: Iterable[int]) -> tuple[dict[int, tuple[int, str]], dict[int, int]]:
        """Breadth-first from the failed nodes: everything down, and why.

        Returns each node down with the node that took it down and a note, and the
        failed-member count of every cluster touched.
        """
        cause: dict[int, tuple[int, str]] = {}
        queue: deque[int] = deque()
        for i in failed:
            if i not in cause:
                cause[i] = (-1, "failed")
                queue.append(i)
        members_down: dict[int, int] = {}
        dependents, members = self._dependents, self._members
        while queue:
            x = queue.popleft()
            for y, member in dependents[x]:
                if y in cause:
                    continue
                if member:
                    members_down[y] = count = members_down.get(y, 0) + 1
                    up, need = members[y] - count, self._min_up(y)
                    if up >= need:
                        continue
                    cause[y] = (x, f"{up} of {members[y]} members up, needs {need}")
                else:
                    cause[y] = (x, "")
                queue.append(y)
        return cause, members_down

    def _down(self, seeds: Iterable[int], held: list[int] | None = None) -> set[int]:
        """What ``_spread`` takes down, without the explanations (the restore order's loop).

        Clusters that lose members but hold are appended to ``held`` when it is given.
        """
        down = set(seeds)
        work = list(down)
        members_down: dict[int, int] = {}
        dependents, members, need = self._dependents, self._members, self._min_up
        while work:
            for y, member in dependents[work.pop()]:
                if y in down:
                    continue
                if member:
                    members_down[y] = count = members_down.get(y, 0) + 1
                    if members[y] - count >= need(y):
                        if held is not None:
                            held.append(y)
                        continue
                down.add(y)
                work.append(y)
        return down

    def impacted_services(self, failed: Iterable[str]) -> ImpactReport:
        """Every business service that loses something it needs when ``failed`` CIs fail.

        Each comes with the path from it to a failed CI; clusters that lost members but
        stayed up are listed as held.
        """
        failed_ids = tuple(dict.fromkeys(failed))
        cause, members_down = self._spread(self._at(i) for i in failed_ids)
        impacts = []
        for i in cause:
            node = self._nodes[i]
            if isinstance(node, BusinessService):
                impacts.append(ServiceImpact(node, self._path(i, cause)))
        impacts.sort(key=lambda s: (s.service.criticality, s.service.id))
        held = tuple(
            Step(self._ids[c], f"{self._members[c] - n} of {self._members[c]} members up: holds")
            for c, n in sorted(members_down.items())
            if c not in cause
        )
        return ImpactReport(failed_ids, tuple(impacts),
                            frozenset(self._ids[i] for i in cause), held)  # fmt: skip

    def _path(self, i: int, cause: Mapping[int, tuple[int, str]]) -> tuple[Step, ...]:
        steps, seen = [], set()
        while i != -1 and i not in seen:
            seen.add(i)
            parent, note = cause[i]
            steps.append(Step(self._ids[i], note))
            i = parent
        return tuple(steps)

    def suggest_impact(self, ci: str) -> Impact:
        """The impact a failure of ``ci`` has on the business, from the services it takes down.

        A criticality-1 service down → HIGH, 2 → MEDIUM, otherwise (or none) → LOW.
        """
        report = self.impacted_services([ci])
        worst = min((s.service.criticality for s in report.services), default=4)
        return Impact.HIGH if worst == 1 else Impact.MEDIUM if worst == 2 else Impact.LOW

    # ----------------------------------------------------------------------- restore order

    def restore_order(
        self,
        failed: Iterable[str],
        *,
        at: datetime,
        weights: RestoreWeights | None = None,
        incidents: Iterable[Any] = (),
        sla: SLADefinition | None = None,
    ) -> list[RestoreStep]:
        """The failed CIs, the one whose restoration gives the business most back first.

        What a CI gives back, service by service (each down service's criticality times
        ``weights.criticality``, plus its users times ``weights.users``; scaled down by
        ``weights.out_of_hours`` when ``at`` is outside its hours of service):

        * in full for the services that come back with it alone (the others still failed),
          or that its failure alone would take down (they need it, whatever else they wait
          for);
        * by ``weights.shared`` for the services it is one of several ways back to (a member
          of a cluster that is down);
        * plus ``weights.unblocks`` per other failed CI that needs it (upstream first), and
          ``weights.sla / (1 + hours)`` for the open incident on it (``incident.ci``) that
          breaches ``sla`` soonest.

        Ties go upstream first, then by id. Every step says why.
        """
        w = weights or RestoreWeights()
        when = require_aware(at, "at")
        failed_ids = tuple(dict.fromkeys(failed))
        indexes = [self._at(i) for i in failed_ids]
        everything, _ = self._spread(indexes)
        down = {i for i in everything if isinstance(self._nodes[i], BusinessService)}
        breaches = self._breaches(incidents, sla, when)
        steps = []
        for ci, i in zip(failed_ids, indexes, strict=True):
            rest = self._down(j for j in indexes if j != i)
            held: list[int] = []
            alone = self._down([i], held)
            back = down - rest
            full = back | (down & alone)
            # Beyond what it takes down alone, only a cluster that held can lead further.
            shared = (down & self._beyond(held, alone)) - full if held else set()
            unblocks = tuple(self._ids[j] for j in indexes if j != i and j in alone)
            score, reasons = 0.0, []
            for s, share in sorted(
                [(s, 1.0) for s in full] + [(s, w.shared) for s in shared],
                key=lambda pair: (-pair[1], self._nodes[pair[0]].criticality, self._ids[pair[0]]),
            ):
                how = "restores" if s in back else "is needed by" if share == 1.0 else (
                    "is one way back for")  # fmt: skip
                value, why = self._service_value(s, share, how, when, w)
                score += value
                reasons.append(why)
            if unblocks:
                score += w.unblocks * len(unblocks)
                reasons.append(f"upstream of {len(unblocks)} other failed CI(s): "
                               f"{', '.join(unblocks)}")  # fmt: skip
            due = breaches.get(ci)
            if due is not None:
                score += w.sla / (1 + max(due[0] / timedelta(hours=1), 0.0))
                reasons.append(f"{due[1]} breaches its SLA in {_human(due[0])}")
            if not reasons:
                reasons.append("no business service waits for it")
            steps.append(RestoreStep(
                ci, round(score, 3), self._names(full), self._names(shared), unblocks,
                tuple(reasons),
            ))  # fmt: skip
        steps.sort(key=lambda s: (-s.score, -len(s.unblocks), s.ci))
        return steps

    def _names(self, indexes: Iterable[int]) -> tuple[str, ...]:
        return tuple(sorted(self._ids[i] for i in indexes))

    def _beyond(self, held: list[int], known: set[int]) -> set[int]:
        """What needs the ``held`` clusters, directly or not, that ``known`` does not hold.

        With ``known`` the nodes a failure takes down, this completes everything that needs
        the failed CI redundancy aside, without walking ``known`` again.
        """
        seen = set(held) - known
        work = list(seen)
        while work:
            for y, _member in self._dependents[work.pop()]:
                if y not in seen and y not in known:
                    seen.add(y)
                    work.append(y)
        return seen

    def _service_value(
        self, s: int, share: float, how: str, when: datetime, w: RestoreWeights
    ) -> tuple[float, str]:
        service = self._nodes[s]
        assert isinstance(service, BusinessService)  # noqa: S101 - only services are asked
        value = (w.criticality * (5 - service.criticality) + w.users * service.users) * share
        facts = f"criticality {service.criticality}, {service.users} users"
        if service.in_service(when):
            return value, f"{how} {service.id} ({facts}, in its hours of service)"
        later = f"{how} {service.id} ({facts}, outside its hours of service now: can wait)"
        return value * w.out_of_hours, later

    def _breaches(
        self, incidents: Iterable[Any], sla: SLADefinition | None, at: datetime
    ) -> dict[str, tuple[timedelta, str]]:
        """Per CI, the time to the earliest breach among its open incidents, and which."""
        out: dict[str, tuple[timedelta, str]] = {}
        if sla is None:
            return out
        for incident in incidents:
            ci = getattr(incident, "ci", None)
            if ci is None or not getattr(incident, "is_active", True):
                continue
            status = sla.evaluate(incident, at=at)
            if status.due_at is None or status.stage.value in ("completed", "canceled"):
                continue
            left = status.due_at - at
            if ci not in out or left < out[ci][0]:
                out[ci] = (left, incident.id)
        return out

    # ----------------------------------------------------------------------- cycles

    def cycles(self) -> list[tuple[str, ...]]:
        """The dependency cycles: each a group of nodes that (transitively) need each other.

        Strongly connected components (Kosaraju's two passes, without recursion, so any
        depth is fine) of more than one node.
        """
        n = len(self._nodes)
        needed_by = [[y for y, _ in deps] for deps in self._dependents]  # x -> who needs x
        order = _finish_order(self._needs)
        component = [-1] * n
        groups: list[list[int]] = []
        for root in reversed(order):
            if component[root] == -1:
                groups.append(_collect(needed_by, root, component, len(groups)))
        return sorted(tuple(sorted(self._ids[u] for u in g)) for g in groups if len(g) > 1)


def _finish_order(graph: list[list[int]]) -> list[int]:
    """Nodes in the order a depth-first search finishes them."""
    seen = [False] * len(graph)
    order: list[int] = []
    for root in range(len(graph)):
        if seen[root]:
            continue
        seen[root] = True
        work = [(root, iter(graph[root]))]
        while work:
            node, rest = work[-1]
            nxt = next((u for u in rest if not seen[u]), None)
            if nxt is None:
                work.pop()
                order.append(node)
            else:
                seen[nxt] = True
                work.append((nxt, iter(graph[nxt])))
    return order


def _collect(graph: list[list[int]], root: int, component: list[int], label_: int) -> list[int]:
    """The nodes reachable from ``root`` not yet in a component, marked ``label_``."""
    component[root] = label_
    found, work = [root], [root]
    while work:
        for u in graph[work.pop()]:
            if component[u] == -1:
                component[u] = label_
                found.append(u)
                work.append(u)
    return found


def _hours_id(node: Node) -> int | None:
    return id(node.hours) if isinstance(node, BusinessService) and node.hours else None


def _human(left: timedelta) -> str:
    if left <= timedelta(0):
        return "no time: breached already"
    minutes = int(left / timedelta(minutes=1))
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _rows(source: Any) -> Iterable[Mapping[str, Any]]:
    """Rows as mappings from dicts, a CSV path or a DataFrame; empty cells are missing."""
    if isinstance(source, (str, Path)):
        with Path(source).open(newline="", encoding="utf-8") as fh:
            rows: list[Mapping[str, Any]] = list(csv.DictReader(fh))
    elif hasattr(source, "to_dict") and hasattr(source, "columns"):
        rows = source.to_dict("records")
    else:
        rows = list(source)
    for row in rows:
        yield {k: v for k, v in row.items() if not _empty(v)}


def _empty(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _int(row: Mapping[str, Any], key: str) -> int | None:
    value = row.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{key} must be a whole number, got {value!r}") from None


_CI_COLUMNS: Final = frozenset({"id", "name", "class", "ci_class", "owner", "criticality",
                                "min_up"})  # fmt: skip


def _ci_row(row: Mapping[str, Any]) -> ConfigurationItem:
    if "id" not in row:
        raise ValidationError(f"a CI row needs an id: {dict(row)!r}")
    return ConfigurationItem(
        row["id"], str(row.get("name", "")), row.get("class", row.get("ci_class", "other")),
        row.get("owner"), _int(row, "criticality"), _int(row, "min_up"),
        {k: v for k, v in row.items() if k not in _CI_COLUMNS},
    )  # fmt: skip


def _service_row(
    row: Mapping[str, Any], calendars: Mapping[str, BusinessCalendar]
) -> BusinessService:
    if "id" not in row:
        raise ValidationError(f"a service row needs an id: {dict(row)!r}")
    hours = row.get("hours")
    if hours is not None and hours not in calendars:
        raise ValidationError(f"service {row['id']}: unknown hours {hours!r}")
    return BusinessService(
        row["id"], str(row.get("name", "")), _int(row, "criticality") or 3, row.get("owner"),
        _int(row, "users") or 0, None if hours is None else calendars[hours],
    )  # fmt: skip
