"""A real PostgreSQL server for tests, started from initdb/pg_ctl in a temporary directory.

It listens on a Unix socket in that directory only (no TCP port to pick or collide on) and
trusts local connections, which only this machine's users who can enter the 0700 directory
can make. PostgreSQL refuses to run as root, so under root (CI, this machine) the server runs
as the `postgres` user that Debian's package creates.

    server = shared_server()          # one per test process, stopped at exit
    url = server.create_database()    # a fresh, empty database for one test

Without initdb the tests that need it skip, except in CI (CI=true), where that is a failure:
`.ci/run` installs Debian's postgresql.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import IN_CI

_SERVER: "PostgresServer | None" = None


def find_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path  # holds data/, the socket and the log
    user: str | None  # the OS user the server runs as, when we are root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        # The plain form users write; the store maps it to psycopg 3.
        return f"postgresql://postgres@/{database}?host={self.root}"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed:\n{result.stdout}{result.stderr}\n{log}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses='' -c unix_socket_directories={self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options, "-w", "start")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its postgresql:// URL."""
        import psycopg

        name = name or f"test_{secrets.token_hex(6)}"
        with psycopg.connect(dbname="postgres", user="postgres", host=str(self.root), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def shared_server() -> PostgresServer:
    """The test process's PostgreSQL server, started on first use (or a skip/CI failure)."""
    global _SERVER
    if _SERVER is not None:
        return _SERVER
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)"
        if IN_CI:
            pytest.fail(message + "; CI must run these tests", pytrace=False)
        pytest.skip(message)
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            pytest.fail("running as root, and there is no 'postgres' user to run PostgreSQL as", pytrace=False)
    # Not under pytest's tmp dir: that is private to root, and the server user must enter it.
    root = Path(tempfile.mkdtemp(prefix="truss-pg-"))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    os.chmod(root, 0o700)
    server = PostgresServer(bin_dir=bin_dir, root=root, user=user)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    atexit.register(server.stop)
    _SERVER = server
    return server
