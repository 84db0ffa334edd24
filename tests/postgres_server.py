"""A real PostgreSQL server for the tests, in a temporary folder, on loopback only.

`initdb` makes a cluster in a fresh folder under the system temp dir, `pg_ctl` starts it on a free
port of 127.0.0.1 with its socket in that folder, and it is stopped (fast shutdown) and deleted
at teardown. PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
user (Debian's package creates it), which owns the folder. Each test gets its own database
(`database()`), so tests never see each other's tables.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "magnet"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """One running cluster; `url` is the maintenance database, `database()` a fresh one."""

    folder: Path
    port: int
    owner: str | None  # the OS user the server runs as (None: the current one)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its name."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return name

    def database(self, prefix: str = "t") -> str:
        """The URL of a new empty database."""
        return self.url_for(self.create_database(prefix))


def _as_owner(owner: str | None, cmd: list[str]) -> list[str]:
    return cmd if owner is None else ["runuser", "-u", owner, "--", *cmd]


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway cluster; skip (with the reason) where PostgreSQL is not installed."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed")
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        owner = "postgres"
    folder = Path(tempfile.mkdtemp(prefix="magnet-pg-"))
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data = folder / "data"
    port = _free_port()
    log = folder / "server.log"
    try:
        subprocess.run(
            _as_owner(owner, [initdb, "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"]),
            check=True,
            capture_output=True,
        )
        options = f"-k {folder} -p {port} -h 127.0.0.1 -c fsync=off -c max_connections=200"
        subprocess.run(
            _as_owner(owner, [pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]),
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        tail = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r} {tail}") from exc
    try:
        yield PostgresServer(folder, port, owner)
    finally:
        subprocess.run(
            _as_owner(owner, [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True, check=False
        )
        shutil.rmtree(folder, ignore_errors=True)
