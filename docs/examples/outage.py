"""An outage through the service model: common cause, impact, restore order at two times.

The third-floor switch, the HR server and one of the two order-database nodes fail (the
switch takes the other node with it). Calls pour in on desktops and applications; the
service model finds the common cause, says which business services are down and why, and
ranks the restoration at 10:00 on a Wednesday and at 03:00 on a Sunday: payroll first in
office hours, the shop first at night.
Run it: ``python docs/examples/outage.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from itsmcore import BusinessCalendar, Incident
from itsmcore.outage import common_causes
from itsmcore.service import BusinessService, ConfigurationItem, Relationship, ServiceModel

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessCalendar.weekly({"mon-fri": "07:00-19:00"}, tz="Europe/Berlin")


def estate() -> ServiceModel:
    desktops = [f"pc-{k:02d}" for k in range(30)]
    cis = [
        ConfigurationItem("core", "Core router", "network_device"),
        ConfigurationItem("sw-dc1", "Data-centre switch 1", "network_device"),
        ConfigurationItem("sw-3f", "Third-floor switch", "network_device"),
        ConfigurationItem("db-01", "Orders DB node 1", "database"),
        ConfigurationItem("db-02", "Orders DB node 2", "database"),
        ConfigurationItem("db-orders", "Orders DB cluster", "cluster", min_up=1),
        ConfigurationItem("srv-web", "Shop web server", "server"),
        ConfigurationItem("srv-hr", "HR server", "server"),
        ConfigurationItem("app-shop", "Shop", "application"),
        ConfigurationItem("app-payroll", "Payroll", "application"),
        *(ConfigurationItem(d, "Desktop", "other") for d in desktops),
    ]
    services = [
        BusinessService("online-shop", "Online shop", criticality=1, users=1_000),
        BusinessService("payroll", "Payroll", criticality=2, users=3_000, hours=OFFICE),
    ]
    relationships = [
        Relationship("sw-dc1", "connected_by", "core"),
        Relationship("sw-3f", "connected_by", "core"),
        Relationship("srv-web", "connected_by", "sw-dc1"),
        Relationship("srv-hr", "connected_by", "sw-dc1"),
        Relationship("db-01", "connected_by", "sw-dc1"),
        Relationship("db-02", "connected_by", "sw-3f"),
        Relationship("db-01", "member_of", "db-orders"),
        Relationship("db-02", "member_of", "db-orders"),
        Relationship("app-shop", "runs_on", "srv-web"),
        Relationship("app-shop", "depends_on", "db-orders"),
        Relationship("app-payroll", "runs_on", "srv-hr"),
        Relationship("online-shop", "depends_on", "app-shop"),
        Relationship("payroll", "depends_on", "app-payroll"),
        *(Relationship(d, "connected_by", "sw-dc1") for d in desktops[:20]),
        *(Relationship(d, "connected_by", "sw-3f") for d in desktops[20:]),
    ]
    return ServiceModel.build(cis=cis, services=services, relationships=relationships)


def calls(start: datetime) -> list[Incident]:
    out = []
    for k in range(24):
        ci = f"pc-{20 + k % 10:02d}" if k < 20 else ("app-shop" if k % 2 else "app-payroll")
        out.append(Incident.open(
            id=f"INC{k + 1:07d}", title="Cannot work", caller=f"user{k}", impact=3, urgency=2,
            at=start + timedelta(minutes=k), by="desk", ci=ci,
        ))  # fmt: skip
    return out


def main() -> None:
    model = estate()
    failed = ["sw-3f", "srv-hr", "db-01"]
    for start in (datetime(2025, 12, 10, 9, 50, tzinfo=BERLIN),
                  datetime(2025, 12, 14, 2, 50, tzinfo=BERLIN)):  # fmt: skip
        incidents = calls(start)
        at = start + timedelta(minutes=10)
        print(f"== {at:%A %H:%M}: {len(incidents)} calls")
        for cause in common_causes(incidents, model)[:2]:
            print(f"common cause? {cause.ci} explains {len(cause.cis)} CIs with calls from "
                  f"{cause.callers} callers; {len(cause.services)} services under it")  # fmt: skip
        print(f"a call on app-shop suggests impact {model.suggest_impact('app-shop')}")
        report = model.impacted_services(failed)
        for impact in report.services:
            print(f"down: {impact.explain()}")
        for step in model.restore_order(failed, at=at):
            print(f"restore {step.ci} (score {step.score:g}):")
            for reason in step.reasons:
                print(f"  - {reason}")


if __name__ == "__main__":
    main()
