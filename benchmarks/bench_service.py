"""The service model at CMDB scale: build from rows, impact, restore order, cycles.

Generates a layered estate as plain rows (dicts, as a CSV or DataFrame export gives them):
20 core routers, 1,000 access switches, 20,000 servers, 6,000 shared platform components
(databases, middleware) used by 54,000 business applications,
19,000 other CIs, 1,000 business services; about 290,000 relationships (connected by, runs
on, depends on, member of 2,000 redundant clusters of two servers). Times
``ServiceModel.from_rows``, then
``impacted_services`` and ``restore_order`` for failures of different reach, and
``cycles``.

    python benchmarks/bench_service.py              # 100k CIs
    python benchmarks/bench_service.py --cis 20000  # smaller
    python benchmarks/bench_service.py --web        # every failure reaches most of it
"""

from __future__ import annotations

import argparse
import json
import platform
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from itsmcore.service import ServiceModel
from timing import best_of


def rows(total: int, seed: int = 1, *, web: bool = False) -> tuple[list[dict[str, Any]], ...]:
    rnd = random.Random(seed)
    scale = total / 100_000
    routers = [f"rt{k}" for k in range(max(2, int(20 * scale)))]
    switches = [f"sw{k}" for k in range(max(4, int(1_000 * scale)))]
    servers = [f"srv{k}" for k in range(int(20_000 * scale))]
    clusters = [f"cl{k}" for k in range(int(2_000 * scale))]
    apps = [f"app{k}" for k in range(int(60_000 * scale))]
    other = [f"ci{k}" for k in range(total - len(routers) - len(switches) - len(servers)
                                      - len(clusters) - len(apps))]  # fmt: skip
    services = [f"svc{k}" for k in range(max(10, int(1_000 * scale)))]
    cis = [{"id": i, "class": "network_device"} for i in routers + switches]
    cis += [{"id": i, "class": "server"} for i in servers]
    cis += [{"id": i, "class": "cluster", "min_up": 1} for i in clusters]
    cis += [{"id": i, "class": "application"} for i in apps]
    cis += [{"id": i, "class": "other"} for i in other]
    svc = [{"id": s, "criticality": rnd.randint(1, 4), "users": rnd.randrange(5_000)}
           for s in services]  # fmt: skip
    rels: list[dict[str, Any]] = []
    rels += [{"source": s, "type": "connected_by", "target": rnd.choice(routers)} for s in switches]
    rels += [{"source": s, "type": "connected_by", "target": rnd.choice(switches)} for s in servers]
    for c in clusters:  # two servers each
        rels += [{"source": s, "type": "member_of", "target": c} for s in rnd.sample(servers, 2)]
    platform_, business = apps[: len(apps) // 10], apps[len(apps) // 10 :]
    for a in apps:  # every application or database runs on a server or a cluster
        host = rnd.choice(clusters) if rnd.random() < 0.3 else rnd.choice(servers)
        rels.append({"source": a, "type": "runs_on", "target": host})
    for a in business:  # business applications use 1-5 shared platform components
        rels += [{"source": a, "type": "depends_on", "target": p}
                 for p in rnd.sample(platform_, rnd.randint(1, 5))]  # fmt: skip
        if web:  # the worst case: business applications also use 1-2 random others
            rels += [{"source": a, "type": "depends_on", "target": rnd.choice(business)}
                     for _ in range(rnd.randint(1, 2))]  # fmt: skip
    rels += [{"source": o, "type": "connected_by", "target": w}
             for o in other for w in rnd.sample(switches, 2)]  # fmt: skip
    for s in services:
        rels += [{"source": s, "type": "depends_on", "target": rnd.choice(apps)}
                 for _ in range(rnd.randint(3, 8))]  # fmt: skip
    rels = [r for r in rels if r["source"] != r["target"]]
    return cis, svc, rels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cis", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    worst = "the worst case: random dependencies between applications"
    parser.add_argument("--web", action="store_true", help=worst)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    cis, services, rels = rows(args.cis, web=args.web)
    print(f"Python {platform.python_version()}, {platform.machine()}")
    print(f"{len(cis):,} CIs, {len(services):,} services, {len(rels):,} relationships")
    build, model = best_of(args.repeats, lambda: ServiceModel.from_rows(
        cis=cis, services=services, relationships=rels))  # fmt: skip
    figures: dict[str, float] = {"build_s": build}
    print(f"{'from_rows':<36} {build:8.3f} s")
    at = datetime(2025, 12, 10, 10, tzinfo=UTC)
    cases = {
        "one server": ["srv17"],
        "one access switch": ["sw3"],
        "one core router": ["rt1"],
        "ten servers and a switch": [*(f"srv{k}" for k in range(100, 110)), "sw7"],
    }
    for name, failed in cases.items():
        impact_s, report = best_of(args.repeats, lambda f=failed: model.impacted_services(f))
        order_s, order = best_of(args.repeats, lambda f=failed: model.restore_order(f, at=at))
        figures[f"impact {name}_s"] = impact_s
        figures[f"restore {name}_s"] = order_s
        print(f"impact: {name:<28} {impact_s * 1e3:8.1f} ms  ({len(report.down):,} down, "
              f"{len(report.services)} services)")  # fmt: skip
        print(f"restore order: {name:<21} {order_s * 1e3:8.1f} ms  ({len(order)} steps)")
    cycles_s, found = best_of(1, model.cycles)
    figures["cycles_s"] = cycles_s
    print(f"{'cycles':<36} {cycles_s:8.3f} s  ({len(found)} cycles)")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": figures}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
