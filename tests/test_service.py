"""The service model: impact with its explanations, redundancy, cycles, restore order.

Hand-built topologies have answers known by reading them; random graphs are checked
against a brute-force fixpoint of the definition (a node is down when it failed, when
something it needs is down, or when a cluster has fewer members up than it needs).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from itsmcore import BusinessCalendar, Impact, Incident, SLADefinition, ValidationError
from itsmcore.cmdb import (
    CIRecord,
    RelationshipRecord,
    ServiceRecord,
    model_from_records,
)
from itsmcore.repository import RecordKind
from itsmcore.service import (
    BusinessService,
    ConfigurationItem,
    Relationship,
    RestoreWeights,
    ServiceModel,
)
from itsmcore.storage import SQLiteStore
from itsmcore.testing import RecordKindContract
from test_storage import InMemory, Postgres, SQLite

OFFICE = BusinessCalendar.weekly({"mon-fri": "07:00-19:00"}, tz="Europe/Berlin")
WEDNESDAY_10 = datetime(2025, 12, 10, 9, tzinfo=UTC)  # 10:00 in Berlin
SUNDAY_03 = datetime(2025, 12, 14, 2, tzinfo=UTC)  # 03:00 in Berlin


def ci(id_: str, **fields: object) -> ConfigurationItem:
    return ConfigurationItem(id_, **fields)  # type: ignore[arg-type]


def rel(source: str, kind: str, target: str) -> Relationship:
    return Relationship(source, kind, target)  # type: ignore[arg-type]


def shop_model() -> ServiceModel:
    """The shop on a redundant database pair and one app server; payroll on office hours."""
    return ServiceModel.build(
        cis=[ci("switch-1", ci_class="network_device"), ci("db-01", ci_class="database"),
             ci("db-02", ci_class="database"), ci("db-cluster", ci_class="cluster", min_up=1),
             ci("app-shop", ci_class="application"), ci("app-pay", ci_class="application"),
             ci("srv-1", ci_class="server"), ci("srv-2", ci_class="server")],
        services=[BusinessService("shop", criticality=1, users=5000),
                  BusinessService("payroll", criticality=2, users=300, hours=OFFICE)],
        relationships=[rel("shop", "depends_on", "app-shop"),
                       rel("payroll", "depends_on", "app-pay"),
                       rel("app-shop", "depends_on", "db-cluster"),
                       rel("app-shop", "runs_on", "srv-2"), rel("app-pay", "runs_on", "srv-1"),
                       rel("db-01", "member_of", "db-cluster"),
                       rel("db-02", "member_of", "db-cluster"),
                       rel("srv-1", "connected_by", "switch-1"),
                       rel("db-01", "connected_by", "switch-1")],
    )  # fmt: skip


def test_impact_comes_with_the_path_that_explains_it() -> None:
    model = shop_model()
    report = model.impacted_services(["switch-1"])
    assert [s.explain() for s in report.services] == [
        "payroll → app-pay → srv-1 → switch-1 (failed)",
    ]
    assert [str(h) for h in report.held] == ["db-cluster (1 of 2 members up: holds)"]
    assert {"switch-1", "srv-1", "db-01", "app-pay", "payroll"} == report.down


def test_a_cluster_holds_while_enough_members_are_up() -> None:
    model = shop_model()
    assert model.impacted_services(["db-01"]).services == ()
    both = model.impacted_services(["db-01", "db-02"])
    (shop,) = both.services
    assert shop.explain() == (
        "shop → app-shop → db-cluster (0 of 2 members up, needs 1) → db-02 (failed)"
    )
    two_of_three = ServiceModel.build(
        cis=[ci("n1"), ci("n2"), ci("n3"), ci("grid", ci_class="cluster", min_up=2)],
        services=[BusinessService("batch")],
        relationships=[rel("batch", "runs_on", "grid"),
                       *(rel(n, "member_of", "grid") for n in ("n1", "n2", "n3"))],
    )  # fmt: skip
    assert two_of_three.impacted_services(["n1"]).services == ()
    assert [s.service.id for s in two_of_three.impacted_services(["n1", "n3"]).services] == [
        "batch"
    ]


def test_a_diamond_is_impacted_once_and_contains_flows_down() -> None:
    model = ServiceModel.build(
        cis=[ci("a"), ci("b"), ci("c"), ci("rack")],
        services=[BusinessService("s", criticality=1)],
        relationships=[rel("s", "depends_on", "a"), rel("s", "depends_on", "b"),
                       rel("a", "depends_on", "c"), rel("b", "depends_on", "c"),
                       rel("rack", "contains", "c")],
    )  # fmt: skip
    (s,) = model.impacted_services(["rack"]).services
    assert s.path[-1].id == "rack"
    assert s.path[-2].id == "c"
    assert model.related("c") == ("a", "b", "rack")
    assert model.suggest_impact("c") is Impact.HIGH


def test_cycles_are_reported_never_fatal_nor_endless() -> None:
    model = ServiceModel.build(
        cis=[ci("a"), ci("b"), ci("c"), ci("d"), ci("e")],
        services=[BusinessService("s")],
        relationships=[rel("a", "depends_on", "b"), rel("b", "depends_on", "c"),
                       rel("c", "depends_on", "a"), rel("d", "depends_on", "e"),
                       rel("e", "depends_on", "d"), rel("s", "depends_on", "a")],
    )  # fmt: skip
    assert model.cycles() == [("a", "b", "c"), ("d", "e")]
    assert model.impacted_services(["c"]).down == {"a", "b", "c", "s"}
    deep = ServiceModel.build(
        cis=[ci(f"n{k}") for k in range(20_000)],
        relationships=[rel(f"n{k}", "depends_on", f"n{(k + 1) % 20_000}") for k in range(20_000)],
    )
    assert [len(c) for c in deep.cycles()] == [20_000]  # no recursion limit


@pytest.mark.parametrize(
    ("nodes", "relationships", "message"),
    [
        ([ci("a")], [rel("a", "runs_on", "ghost")], "unknown id 'ghost'"),
        ([ci("a")], [rel("a", "runs_on", "a")], "cannot runs_on itself"),
        ([ci("a"), BusinessService("a")], [], "two nodes have the id 'a'"),
    ],
)
def test_bad_models_are_refused_by_name(
    nodes: list[ConfigurationItem], relationships: list[Relationship], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ServiceModel(nodes, relationships)


def test_bad_values_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="needs 3 members up but has 2"):
        ServiceModel([ci("a"), ci("b"), ci("pool", min_up=3)],
                     [rel("a", "member_of", "pool"), rel("b", "member_of", "pool")])  # fmt: skip
    with pytest.raises(ValidationError, match="unknown CI class"):
        ci("a", ci_class="toaster")
    with pytest.raises(ValidationError, match="criticality is 1"):
        BusinessService("s", criticality=7)
    with pytest.raises(ValidationError, match="unknown relationship type"):
        rel("a", "likes", "b")
    with pytest.raises(ValidationError, match="unknown CI or service"):
        shop_model().impacted_services(["nowhere"])


def test_a_model_is_built_from_dicts_csv_files_or_a_dataframe(tmp_path: Path) -> None:
    cis = [{"id": "srv-1", "class": "server", "criticality": "2", "rack": "R7"},
           {"id": "app-1", "class": "application", "owner": ""}]  # fmt: skip
    services = [{"id": "shop", "criticality": 1, "users": "120", "hours": "office"}]
    rels = [{"source": "app-1", "type": "runs on", "target": "srv-1"},
            {"source": "shop", "type": "depends_on", "target": "app-1"}]  # fmt: skip
    paths = {}
    for name, rows in (("cis", cis), ("services", services), ("rels", rels)):
        paths[name] = tmp_path / f"{name}.csv"
        with paths[name].open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            writer.writerows(rows)
    import pandas as pd  # noqa: PLC0415 - optional in the package, installed for the tests

    built = [
        ServiceModel.from_rows(cis=cis, services=services, relationships=rels,
                               hours={"office": OFFICE}),
        ServiceModel.from_rows(cis=paths["cis"], services=paths["services"],
                               relationships=paths["rels"], hours={"office": OFFICE}),
        ServiceModel.from_rows(cis=pd.DataFrame(cis), services=pd.DataFrame(services),
                               relationships=pd.DataFrame(rels), hours={"office": OFFICE}),
    ]  # fmt: skip
    for model in built:
        srv = model.node("srv-1")
        assert isinstance(srv, ConfigurationItem)
        assert (srv.criticality, dict(srv.attributes)) == (2, {"rack": "R7"})
        (shop,) = model.impacted_services(["srv-1"]).services
        assert (shop.service.users, shop.service.hours) == (120, OFFICE)
    assert not built[0].diff(built[1])
    with pytest.raises(ValidationError, match="unknown hours"):
        ServiceModel.from_rows(services=services)


def test_a_changed_model_is_a_new_model_with_a_diff() -> None:
    old = shop_model()
    new = old.changed(
        add=[ci("db-03", ci_class="database"), BusinessService("shop", criticality=2)],
        remove=["srv-2"],
        relate=[rel("db-03", "member_of", "db-cluster")],
    )
    change = new.diff(old)
    assert (change.added, change.removed, change.changed) == (("db-03",), ("srv-2",), ("shop",))
    assert change.added_relationships == (rel("db-03", "member_of", "db-cluster"),)
    assert change.removed_relationships == (rel("app-shop", "runs_on", "srv-2"),)
    assert "srv-2" in old  # the old model is unchanged
    assert not old.diff(shop_model())


# --------------------------------------------------------------------------- restore order


def test_the_same_failure_ranks_differently_at_ten_on_wednesday_and_three_on_sunday() -> None:
    model = shop_model()
    failed = ["db-01", "db-02", "srv-1", "switch-1"]
    weekday = model.restore_order(failed, at=WEDNESDAY_10)
    sunday = model.restore_order(failed, at=SUNDAY_03)
    assert [s.ci for s in weekday] == ["switch-1", "db-02", "db-01", "srv-1"]
    assert [s.ci for s in sunday] == ["db-02", "switch-1", "db-01", "srv-1"]
    first = weekday[0]
    assert first.restores == ("payroll",)
    assert first.helps == ("shop",)
    assert first.unblocks == ("db-01", "srv-1")
    assert "is needed by payroll (criticality 2, 300 users, in its hours of service)" in (
        first.reasons
    )
    assert any("outside its hours of service now: can wait" in r for r in sunday[1].reasons)


def test_weights_are_the_callers_and_an_imminent_breach_counts() -> None:
    model = shop_model()
    # A business that puts its people first: payroll's users weigh, criticality does not.
    people = RestoreWeights(criticality=0, users=1, unblocks=0)
    assert model.restore_order(["srv-1", "srv-2"], at=WEDNESDAY_10, weights=people)[0].ci == (
        "srv-2"  # 5,000 shop users over 300
    )
    ranked = model.restore_order(["srv-1", "srv-2"], at=WEDNESDAY_10)
    assert [s.ci for s in ranked] == ["srv-2", "srv-1"]
    sla = SLADefinition.incident_resolution(targets={p: timedelta(hours=1) for p in range(1, 6)})
    opened = WEDNESDAY_10 - timedelta(minutes=50)
    urgent = Incident.open(id="INC1", title="Payroll down", caller="hr", impact=2, urgency=2,
                           at=opened, by="desk", ci="srv-1")  # fmt: skip
    weights = RestoreWeights(sla=500)
    order = model.restore_order(["srv-1", "srv-2"], at=WEDNESDAY_10, weights=weights,
                                incidents=[urgent], sla=sla)  # fmt: skip
    assert order[0].ci == "srv-1"
    assert "INC1 breaches its SLA in 0 h 10 min" in order[0].reasons


# --------------------------------------------------------------------------- random graphs

KINDS = ("depends_on", "runs_on", "connected_by", "contains", "member_of")


@st.composite
def graphs(draw: st.DrawFn) -> tuple[ServiceModel, list[str]]:
    n = draw(st.integers(2, 14))
    ids = [f"c{k}" for k in range(n)]
    services = [f"s{k}" for k in range(draw(st.integers(1, 4)))]
    nodes: list[ConfigurationItem | BusinessService] = [
        ci(i, min_up=draw(st.none() | st.integers(1, 3))) for i in ids
    ]
    nodes += [BusinessService(s, criticality=draw(st.integers(1, 4))) for s in services]
    every = ids + services
    pairs = draw(st.lists(st.tuples(st.sampled_from(every), st.sampled_from(KINDS),
                                    st.sampled_from(every)), max_size=30))  # fmt: skip
    rels = [rel(a, k, b) for a, k, b in pairs if a != b]
    failed = draw(st.lists(st.sampled_from(ids), max_size=4))
    try:
        return ServiceModel(nodes, rels), failed
    except ValidationError as exc:  # a cluster needing more members than it has
        assume("members up but has" not in str(exc))
        raise


def _brute_down(model: ServiceModel, failed: list[str]) -> set[str]:
    """Apply the definition until nothing changes."""
    needs: dict[str, set[str]] = {}
    members: dict[str, set[str]] = {}
    for r in model.relationships:
        if r.type.value in ("depends_on", "runs_on", "connected_by"):
            needs.setdefault(r.source, set()).add(r.target)
        elif r.type.value == "contains":
            needs.setdefault(r.target, set()).add(r.source)
        else:
            members.setdefault(r.target, set()).add(r.source)
    down = set(failed)
    changed = True
    while changed:
        changed = False
        for node in (n.id for n in model.nodes):
            if node in down:
                continue
            mine = members.get(node, set())
            need = getattr(model.node(node), "min_up", None) or 1
            if needs.get(node, set()) & down or (mine and len(mine - down) < need):
                down.add(node)
                changed = True
    return down


@given(case=graphs())
def test_impact_equals_the_brute_force_fixpoint_and_every_path_is_real(
    case: tuple[ServiceModel, list[str]],
) -> None:
    model, failed = case
    report = model.impacted_services(failed)
    assert report.down == _brute_down(model, failed)
    edges = {(r.source, r.target) for r in model.relationships} | {
        (r.target, r.source) for r in model.relationships
    }
    for impact in report.services:
        ids = [step.id for step in impact.path]
        assert ids[0] == impact.service.id
        assert ids[-1] in failed
        assert all(pair in edges for pair in pairwise(ids))
    assert {s.service.id for s in report.services} == {
        s.id for s in model.services if s.id in report.down
    }


# --------------------------------------------------------------------------- common causes


def _floor() -> ServiceModel:
    """40 desktops and 3 application servers behind one access switch under a core router."""
    desktops = [ci(f"pc-{k:02d}", ci_class="other") for k in range(40)]
    apps = [ci(f"app-{n}", ci_class="application") for n in ("mail", "crm", "wiki")]
    servers = [ci(f"srv-{n}", ci_class="server") for n in ("mail", "crm", "wiki")]
    return ServiceModel.build(
        cis=[*desktops, *apps, *servers, ci("sw-3f", ci_class="network_device"),
             ci("core", ci_class="network_device"), ci("printer", ci_class="other")],
        services=[BusinessService(n, criticality=c, users=u)
                  for n, c, u in (("mail", 2, 900), ("crm", 1, 120), ("wiki", 4, 300))],
        relationships=[
            *(rel(d.id, "connected_by", "sw-3f") for d in desktops),
            *(rel(f"app-{n}", "runs_on", f"srv-{n}") for n in ("mail", "crm", "wiki")),
            *(rel(f"srv-{n}", "connected_by", "sw-3f") for n in ("mail", "crm", "wiki")),
            *(rel(n, "depends_on", f"app-{n}") for n in ("mail", "crm", "wiki")),
            rel("sw-3f", "connected_by", "core"), rel("printer", "connected_by", "core"),
        ],
    )  # fmt: skip


def _calls(n: int) -> list[Incident]:
    at = WEDNESDAY_10
    out = [
        Incident.open(id=f"INC{k:04d}", title="No network", caller=f"user{k % 30}", impact=3,
                      urgency=2, at=at + timedelta(minutes=k), by="desk", ci=f"pc-{k % 40:02d}")
        for k in range(n)
    ]  # fmt: skip
    out.append(Incident.open(id="INC9000", title="CRM down", caller="sales", impact=2,
                             urgency=1, at=at, by="desk", ci="app-crm"))  # fmt: skip
    out.append(Incident.open(id="INC9001", title="Printer", caller="hr", impact=3, urgency=3,
                             at=at, by="desk", ci="printer"))  # fmt: skip
    return out


def test_the_switch_under_many_calls_is_the_common_cause() -> None:
    from itsmcore.outage import common_causes  # noqa: PLC0415 - beside its use

    model = _floor()
    causes = common_causes(_calls(60), model)
    top = causes[0]
    # The switch explains all 40 desktops and the CRM app, and takes 3 services down; the
    # core router explains as much (and the printer: one more CI), so it ranks first ...
    assert [c.ci for c in causes[:2]] == ["core", "sw-3f"]
    assert len(top.cis) == 42
    # ... and without the printer's call, the more specific switch comes first.
    no_printer = [i for i in _calls(60) if i.ci != "printer"]
    best = common_causes(no_printer, model)[0]
    assert (best.ci, len(best.cis), best.services) == ("sw-3f", 41, ("crm", "mail", "wiki"))
    assert best.callers == 31  # 30 desk users and sales
    assert len(best.incidents) == 61


def test_a_common_cause_becomes_a_parent_incident_or_a_problem() -> None:
    from itsmcore.outage import common_causes  # noqa: PLC0415 - beside its use

    calls = [i for i in _calls(12) if i.ci != "printer"]
    cause = common_causes(calls, _floor())[0]
    later = WEDNESDAY_10 + timedelta(hours=1)
    parent, children = cause.to_parent(id="INC0100", at=later, by="major-incident-mgr")
    assert (parent.ci, len(parent.children)) == ("sw-3f", 13)
    assert all(c.parent == "INC0100" for c in children)
    problem, linked = cause.to_problem(id="PRB0100", at=later, by="problem-mgr")
    assert (problem.ci, len(problem.incidents)) == ("sw-3f", 13)
    assert all(i.problems == ("PRB0100",) for i in linked)
    with pytest.raises(ValidationError, match="min_cis"):
        common_causes(calls, _floor(), min_cis=0)


# --------------------------------------------------------------------------- storage


T0 = datetime(2025, 1, 6, 9, tzinfo=UTC)


@st.composite
def ci_records(draw: st.DrawFn) -> CIRecord:
    def item() -> ConfigurationItem:
        return ci("srv-1", name=draw(st.sampled_from(["a", "b"])),
                  ci_class=draw(st.sampled_from(["server", "database"])),
                  criticality=draw(st.none() | st.integers(1, 4)),
                  attributes=draw(st.dictionaries(st.sampled_from(["rack", "os"]),
                                                  st.integers(0, 9), max_size=2)))  # fmt: skip

    record = CIRecord.register(item(), at=T0, by="cmdb")
    for step in range(draw(st.integers(0, 4))):
        record = record.revise(item(), at=T0 + timedelta(hours=step), by="cmdb")
    if draw(st.booleans()):
        record = record.retire(reason="decommissioned", at=T0 + timedelta(days=1), by="cmdb")
    return record


@st.composite
def service_records(draw: st.DrawFn) -> ServiceRecord:
    record = ServiceRecord.register(
        BusinessService("shop", criticality=draw(st.integers(1, 4)), users=draw(st.integers(0, 9))),
        at=T0, by="cmdb",
    )  # fmt: skip
    if draw(st.booleans()):
        record = record.revise(BusinessService("shop", criticality=1, hours=OFFICE), hours="office",
                               at=T0 + timedelta(hours=1), by="cmdb")  # fmt: skip
    return record


@st.composite
def relationship_records(draw: st.DrawFn) -> RelationshipRecord:
    kind = draw(st.sampled_from(["depends_on", "runs_on", "member_of", "contains"]))
    record = RelationshipRecord.register(rel("app-1", kind, "srv-1"), at=T0, by="cmdb")
    if draw(st.booleans()):
        record = record.retire(reason="moved", at=T0 + timedelta(hours=1), by="cmdb")
    return record


class _CIs(RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = RecordKind("cis", CIRecord)

    def records(self) -> st.SearchStrategy[Any]:
        return ci_records()


class _Services(RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = RecordKind("services", ServiceRecord)

    def records(self) -> st.SearchStrategy[Any]:
        return service_records()


class _Relationships(RecordKindContract):
    record_kind: ClassVar[RecordKind[Any]] = RecordKind("relationships", RelationshipRecord)

    def records(self) -> st.SearchStrategy[Any]:
        return relationship_records()


class TestCIsInMemory(InMemory, _CIs):
    pass


class TestCIsInSQLite(SQLite, _CIs):
    pass


class TestCIsInPostgres(Postgres, _CIs):
    pass


class TestServicesInMemory(InMemory, _Services):
    pass


class TestServicesInSQLite(SQLite, _Services):
    pass


class TestServicesInPostgres(Postgres, _Services):
    pass


class TestRelationshipsInMemory(InMemory, _Relationships):
    pass


class TestRelationshipsInSQLite(SQLite, _Relationships):
    pass


class TestRelationshipsInPostgres(Postgres, _Relationships):
    pass


def test_a_stored_model_comes_back_as_the_same_model(tmp_path: Path) -> None:
    model = shop_model()
    store = SQLiteStore(tmp_path / "cmdb.db")
    with store.unit_of_work() as uow:
        for node in model.nodes:
            if isinstance(node, ConfigurationItem):
                uow.cis.add(CIRecord.register(node, at=T0, by="import"))
            else:
                hours = "office" if node.hours is not None else None
                uow.services.add(ServiceRecord.register(node, hours=hours, at=T0, by="import"))
        for r in model.relationships:
            uow.relationships.add(RelationshipRecord.register(r, at=T0, by="import"))
        uow.commit()
    with store.unit_of_work() as uow:
        back = model_from_records(cis=uow.cis.find(), services=uow.services.find(),
                                  relationships=uow.relationships.find(),
                                  calendars={"office": OFFICE})  # fmt: skip
        assert not back.diff(model)
        srv = uow.cis.get("srv-2")
        uow.cis.save(srv.retire(reason="decommissioned", at=T0 + timedelta(days=1), by="cmdb"))
        uow.commit()
    with store.unit_of_work() as uow:
        later = model_from_records(cis=uow.cis.find(), services=uow.services.find(),
                                   relationships=uow.relationships.find(),
                                   calendars={"office": OFFICE})  # fmt: skip
        change = later.diff(model)
        assert (change.removed, len(change.removed_relationships)) == (("srv-2",), 1)
        assert [c.id for c in uow.cis.find(state="retired")] == ["srv-2"]
    with pytest.raises(ValidationError, match="name its hours of service"):
        ServiceRecord.register(BusinessService("payroll", hours=OFFICE), at=T0, by="x")


def test_changes_use_the_model_for_related_cis_and_impacted_services() -> None:
    from itsmcore import Change  # noqa: PLC0415 - beside its use
    from itsmcore.scheduling import ConflictKind, conflicts  # noqa: PLC0415

    model = shop_model()
    start = datetime(2025, 12, 13, 21, tzinfo=UTC)

    def change(id_: str, cis: list[str]) -> Change:
        return Change.open(id=id_, title="Work", requester="rita", at=WEDNESDAY_10, by="rita",
                           cis=cis, backout_plan="undo", planned_start=start,
                           planned_end=start + timedelta(hours=2))  # fmt: skip

    patch_switch, patch_server = change("CHG1", ["switch-1"]), change("CHG2", ["srv-1"])
    (clash,) = conflicts(patch_switch, [patch_server], related=model.related)
    assert (clash.kind, clash.ci, clash.other) == (ConflictKind.RELATED_CI, "srv-1", "CHG2")
    at_risk = model.impacted_services(patch_switch.cis)
    assert [s.service.id for s in at_risk.services] == ["payroll"]
