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


class PostgresServer:
    """One private server: ``start()`` returns a DSN, ``restart()``, ``stop()`` deletes it."""

    def __init__(self) -> None:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            msg = "PostgreSQL binaries (initdb, pg_ctl) not found"
            raise RuntimeError(msg)
        self._initdb, self._pg_ctl = initdb, pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="itsmcore-pg-"))
        self.data, self.socket = self.root / "data", self.root / "socket"

    def _ctl(self, *args: str) -> None:
        options = f"-k {self.socket} -c listen_addresses='' -c fsync=off -p 5432"
        subprocess.run(
            _as_server_user([self._pg_ctl, "-D", str(self.data), "-o", options,
                             "-l", str(self.root / "log"), *args]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self) -> str:
        """Create and start the server; the DSN of its ``postgres`` database."""
        self.socket.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket, "postgres")
        subprocess.run(
            _as_server_user([self._initdb, "-D", str(self.data), "-A", "trust", "-U", "itsm",
                             "-E", "UTF8"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self._ctl("-w", "-t", "60", "start")
        return f"host={self.socket} port=5432 user=itsm dbname=postgres"

    def restart(self) -> None:
        """Stop the server at once (every connection dies) and start it again."""
        self._ctl("-m", "immediate", "-w", "-t", "60", "restart")

    def stop(self) -> None:
        """Stop the server and delete its files."""
        try:
            subprocess.run(
                _as_server_user([self._pg_ctl, "-D", str(self.data), "-m", "immediate", "-w",
                                 "stop"]),
                check=False, capture_output=True, timeout=120,
            )  # fmt: skip
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a private server; yield a DSN to its ``postgres`` database; stop and delete it."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
