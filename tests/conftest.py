"""Shared test configuration: hypothesis profiles with a fixed example budget."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# "ci" keeps the whole suite within minutes on two cores and is deterministic, so a red run
# can be reproduced; "dev" digs deeper on demand: HYPOTHESIS_PROFILE=dev pytest.
settings.register_profile(
    "ci",
    max_examples=60,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# --------------------------------------------------------------------------- PostgreSQL

import itertools  # noqa: E402 - grouped with the fixtures that use it
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from postgres_server import REQUIRED, postgres_server  # noqa: E402

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A throwaway server for the whole session (skipped, or failed if required, without one)."""
    try:
        server = postgres_server()
        dsn = server.__enter__()
    except Exception as exc:  # noqa: BLE001 - reported as the skip or failure reason
        if REQUIRED:
            pytest.fail(f"PostgreSQL is required (ITSMCORE_REQUIRE_POSTGRES=1) but: {exc!r}")
        pytest.skip(f"no PostgreSQL server could be started: {exc!r}")
    try:
        yield dsn
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def postgres_database(postgres_dsn: str) -> str:
    """A fresh, empty database on the session's server, for one test."""
    import psycopg  # noqa: PLC0415

    name = f"itsm_test_{next(_databases)}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_dsn.replace("dbname=postgres", f"dbname={name}")
