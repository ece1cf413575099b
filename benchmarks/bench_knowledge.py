"""Knowledge search: what indexing costs a commit, and how long a search takes, per store.

A corpus of published articles with Zipf-distributed words (a few common, many rare) is
committed in batches of 100; then suggestions are asked for random three-word incident
titles. Reports the commit time per article and the median and 95th-percentile search
time for the in-memory store, SQLite (FTS5) and PostgreSQL (tsvector, a private server).

    python benchmarks/bench_knowledge.py --articles 5000 --queries 300
    python benchmarks/bench_knowledge.py --quick
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from itsmcore.knowledge import KnowledgeArticle, suggest
from itsmcore.storage import InMemoryStore, PostgresStore, SQLiteStore
from postgres_server import postgres_server

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)


def vocabulary(size: int, rnd: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rnd.choice(letters) for _ in range(rnd.randint(3, 10))) for _ in range(size)]


def corpus(n: int, rnd: random.Random) -> list[KnowledgeArticle]:
    words = vocabulary(5000, rnd)
    weights = [1 / (k + 1) for k in range(len(words))]

    def text(k: int) -> str:
        return " ".join(rnd.choices(words, weights, k=k))

    out = []
    for i in range(1, n + 1):
        a = KnowledgeArticle.open(
            id=f"KB{i:07d}", title=text(6), body=text(rnd.randint(50, 400)),
            keywords=text(3).split(), at=T0, by="amy",
        )  # fmt: skip
        out.append(a.submit(at=T0, by="amy").publish(at=T0 + timedelta(minutes=1), by="bob"))
    return out


def measure(store: Any, articles: list[KnowledgeArticle], queries: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    for k in range(0, len(articles), 100):
        with store.unit_of_work() as uow:
            for a in articles[k : k + 100]:
                uow.knowledge.add(a)
            uow.commit()
    commit = (time.perf_counter() - start) / len(articles)
    times = []
    with store.unit_of_work() as uow:
        for q in queries:
            t = time.perf_counter()
            suggest(uow.knowledge, q, limit=5)
            times.append(time.perf_counter() - t)
    times.sort()
    return {
        "commit_per_article_ms": commit * 1e3,
        "search_median_ms": statistics.median(times) * 1e3,
        "search_p95_ms": times[int(len(times) * 0.95) - 1] * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--articles", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.articles, args.queries = 300, 50
    rnd = random.Random(19)
    articles = corpus(args.articles, rnd)
    words = vocabulary(5000, random.Random(19))  # the same words, drawn again
    queries = [" ".join(rnd.choices(words[:2000], k=3)) for _ in range(args.queries)]
    results = {}
    results["memory"] = measure(InMemoryStore(), articles, queries)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "kb.sqlite3")
        results["sqlite"] = measure(store, articles, queries)
        store.close()
    with postgres_server() as dsn:
        store = PostgresStore(dsn)
        results["postgres"] = measure(store, articles, queries)
        store.close()
    print(json.dumps({"articles": args.articles, "queries": args.queries, **results}, indent=2))


if __name__ == "__main__":
    main()
