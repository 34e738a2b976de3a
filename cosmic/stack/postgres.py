"""PostgreSQL from the system's binaries, in the state folder, on its own loopback port.

``initdb``/``postgres`` refuse to run as root, so when we are root the server
runs as the ``postgres`` system user over a data folder that user owns.
TimescaleDB is enabled when the extension is installed; when it is not,
``status`` says so and the connectors fall back to native partitioning.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cosmic import secrets
from cosmic.errors import DependencyMissing, StackError
from cosmic.stack.service import LocalService

_SERVICE_USER = "postgres"
# TimescaleDB must be preloaded. Its scheduler takes one background worker per database
# with the extension (tests make many), on top of PostgreSQL's own.
_TIMESCALE_CONF = (
    "shared_preload_libraries = 'timescaledb'\n"
    "timescaledb.telemetry_level = off\n"
    "max_worker_processes = 24\n"
    "timescaledb.max_background_workers = 16\n"
)


def pg_bindir() -> Path:
    """Folder of the newest installed PostgreSQL server binaries."""
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "postgres").exists():
            return candidate
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    if initdb := shutil.which("initdb"):
        return Path(initdb).resolve().parent
    raise DependencyMissing("postgresql", "install it with `apt-get install postgresql`")


class PostgresService(LocalService):
    name = "postgres"
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to
    # leave; SIGINT ("fast") rolls back open transactions and stops at once.
    stop_signal = signal.SIGINT

    @property
    def port(self) -> int:
        return self.settings.postgres.port

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    def endpoint(self) -> dict[str, Any]:
        pg = self.settings.postgres
        return {"dsn": pg.dsn_redacted, "host": pg.host, "port": pg.port, "database": pg.database}

    def run_as(self) -> tuple[str, str] | None:
        return (_SERVICE_USER, _SERVICE_USER)

    def _owner(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(_SERVICE_USER)
        except KeyError:
            raise StackError(
                f"running as root needs the '{_SERVICE_USER}' system user, which the "
                "postgresql package creates: `apt-get install postgresql`"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _chown_tree(self, path: Path, owner: tuple[int, int]) -> None:
        os.chown(path, *owner)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), *owner)

    def prepare(self) -> None:
        owner = self._owner()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if owner:
            # The service user must reach its folder through the state folder.
            for parent in [self.home, *self.home.parents]:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
            os.chown(self.home, *owner)
            os.chown(self.socket_dir, *owner)
        pg = self.settings.postgres
        generated = pg.password is None
        stored = secrets.path(self.settings.state_dir, "postgres", pg.user)
        if not (self.data_dir / "PG_VERSION").exists():
            if generated:
                secrets.ensure(self.settings.state_dir, "postgres", pg.user)
            self._initdb(owner)
        elif generated and not stored.exists():
            raise StackError(
                f"PostgreSQL's data at {self.data_dir} was made before the stack generated "
                "passwords, and its password is not stored: move that folder away to start "
                "afresh, or give the old password with COSMIC_POSTGRES__PASSWORD")
        conf = self.data_dir / "postgresql.auto.conf"
        conf.write_text(
            "# written by cosmic stack; edits are overwritten on start\n"
            f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "max_connections = 100\nshared_buffers = '128MB'\n"
            "fsync = on\nsynchronous_commit = on\n"
            "logging_collector = off\nlog_min_messages = warning\n"
            + (_TIMESCALE_CONF if self._timescale_library() else "")
        )
        if owner:
            os.chown(conf, *owner)

    def _initdb(self, owner: tuple[int, int] | None) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        pwfile = self.home / ".pwfile"
        pwfile.touch(mode=0o600)
        os.chmod(pwfile, 0o600)
        pwfile.write_text(self.settings.postgres.secret() + "\n")
        if owner:
            os.chown(self.data_dir, *owner)
            os.chown(pwfile, *owner)
        cmd = [
            str(pg_bindir() / "initdb"), "-D", str(self.data_dir),
            "-U", self.settings.postgres.user, f"--pwfile={pwfile}",
            # A password on every connection, the Unix socket's too: nobody on the host
            # gets in without the stored one.
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
            "-E", "UTF8", "--locale=C.UTF-8",
        ]
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, check=False,
                user=owner[0] if owner else None, group=owner[1] if owner else None,
                cwd=self.home,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise StackError(f"initdb failed: {(result.stdout + result.stderr).strip()[-800:]}")

    def command(self) -> list[str]:
        return [str(pg_bindir() / "postgres"), "-D", str(self.data_dir)]

    def executable(self) -> str:
        return "postgres"

    def _connect(self, database: str, timeout_s: float) -> psycopg.Connection[Any]:
        pg = self.settings.postgres
        return psycopg.connect(
            host=pg.host, port=pg.port, user=pg.user,
            password=pg.secret(), dbname=database,
            connect_timeout=max(1, int(timeout_s)), autocommit=True,
        )

    def probe(self, timeout_s: float) -> None:
        with self._connect("postgres", timeout_s) as conn:
            conn.execute("SELECT 1")

    def after_ready(self) -> None:
        db = self.settings.postgres.database
        with self._connect("postgres", 10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        if self.settings.postgres.timescale != "off" and self.timescale_available():
            with self._connect(db, 10) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    def _timescale_library(self) -> bool:
        pkglib = pg_bindir().parent / "lib"
        return any(pkglib.glob("timescaledb*.so"))

    def timescale_available(self) -> bool:
        with self._connect("postgres", 5) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
        return row is not None and self._timescale_library()

    def version(self) -> str | None:
        with self._connect("postgres", 3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]).split()[0] if row else None

    def timescale_state(self) -> tuple[str | None, bool, str | None]:
        """(version installed, preloaded by the running server, version enabled in the
        configured database); None where there is none."""
        with self._connect("postgres", 3) as conn:
            row = conn.execute("SELECT default_version FROM pg_available_extensions "
                               "WHERE name = 'timescaledb'").fetchone()
            preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        installed = str(row[0]) if row and self._timescale_library() else None
        libraries = str(preload[0]) if preload else ""
        preloaded = "timescaledb" in {lib.strip() for lib in libraries.split(",")}
        enabled = None
        if installed:
            with self._connect(self.settings.postgres.database, 3) as conn:
                ext = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            enabled = str(ext[0]) if ext else None
        return installed, preloaded, enabled

    def notes(self) -> list[str]:
        try:
            installed, preloaded, enabled = self.timescale_state()
        except psycopg.Error:
            return []
        db = self.settings.postgres.database
        if installed is None:
            return [
                "timescaledb extension NOT installed: time-series tables use native "
                "partitioning and date_bin() instead (infra/local/timescaledb.sh builds it)"
            ]
        if not preloaded:
            return [
                f"timescaledb {installed} installed but not preloaded by this server: "
                "restart PostgreSQL (cosmic stack down && cosmic stack up) to enable it"
            ]
        if enabled is None:
            return [
                f"timescaledb {installed} preloaded but not enabled in database {db}: its "
                "tables use the native fallback"
                + (" (COSMIC_POSTGRES__TIMESCALE=off)"
                   if self.settings.postgres.timescale == "off" else "")
            ]
        return [f"timescaledb extension enabled (version {enabled}, database {db})"]
