"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl on a unix socket in a temp dir.

Never a shared or mocked database. When the tests run as root (CI containers), the server
runs as the ``postgres`` user, since PostgreSQL refuses to run as root. Set
``ITSMCORE_REQUIRE_POSTGRES=1`` to make the tests fail, not skip, when it cannot start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REQUIRED = os.environ.get("ITSMCORE_REQUIRE_POSTGRES") == "1"
_CANDIDATE_DIRS = [
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
]


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _CANDIDATE_DIRS:
        path = Path(directory) / name
        if path.exists():
            return str(path)
    return None


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a private server; yield a DSN to its ``postgres`` database; stop and delete it."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        msg = "PostgreSQL binaries (initdb, pg_ctl) not found"
        raise RuntimeError(msg)
    root = Path(tempfile.mkdtemp(prefix="itsmcore-pg-"))
    data, socket = root / "data", root / "socket"
    socket.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(socket, "postgres")
    try:
        subprocess.run(
            _as_server_user([initdb, "-D", str(data), "-A", "trust", "-U", "itsm", "-E", "UTF8"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = f"-k {socket} -c listen_addresses='' -c fsync=off -p 5432"
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"),
                             "-w", "-t", "60", "start"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        try:
            yield f"host={socket} port=5432 user=itsm dbname=postgres"
        finally:
            subprocess.run(
                _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                check=False, capture_output=True, timeout=120,
            )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
