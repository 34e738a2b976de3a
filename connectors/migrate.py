"""Versioned SQL migrations for the stores, applied once each and recorded.

Files live under ``infra/sql/<store>/`` and are named ``NNN_name.sql``, or
``NNN_name.<variant>.sql`` where the TimescaleDB and the native-PostgreSQL
paths differ (variants ``timescale`` and ``native``). Applied versions are
recorded in a ``schema_migrations`` table, so migrating again does nothing.
A file whose first line is ``-- cosmic: no-transaction`` runs statement by
statement outside a transaction (TimescaleDB's continuous aggregates need it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from connectors.errors import MigrationError

Variant = Literal["timescale", "native"]
VARIANTS: tuple[Variant, ...] = ("timescale", "native")
SQL_ROOT = Path(__file__).resolve().parent.parent / "infra" / "sql"
NO_TRANSACTION = "-- cosmic: no-transaction"
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(timescale|native))?\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    variant: Variant | None  # None: the same for every variant
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def no_transaction(self) -> bool:
        return self.text.lstrip().startswith(NO_TRANSACTION)


def parse_name(path: Path) -> Migration:
    m = _NAME.match(path.name)
    if m is None:
        raise MigrationError(
            f"{path}: migration files are named NNN_name.sql or NNN_name.<timescale|native>.sql")
    variant: Any = m.group(3)
    return Migration(int(m.group(1)), m.group(2), variant, path)


def discover(folder: Path) -> list[Migration]:
    if not folder.is_dir():
        raise MigrationError(f"no migration folder at {folder}")
    return sorted((parse_name(p) for p in folder.glob("*.sql")),
                  key=lambda m: (m.version, m.variant or ""))


def for_variant(migrations: list[Migration], variant: Variant | None) -> list[Migration]:
    """One migration per version: the common file, or the one for ``variant``."""
    by_version: dict[int, list[Migration]] = {}
    for m in migrations:
        by_version.setdefault(m.version, []).append(m)
    chosen = []
    for version, files in sorted(by_version.items()):
        common = [m for m in files if m.variant is None]
        specific = [m for m in files if m.variant is not None]
        if common and specific:
            raise MigrationError(f"version {version:03d} has both a common and a variant file")
        if len(common) > 1:
            raise MigrationError(f"version {version:03d} has {len(common)} files")
        if common:
            chosen.append(common[0])
            continue
        if variant is None:
            raise MigrationError(f"version {version:03d} has variants but this store has none")
        match = [m for m in specific if m.variant == variant]
        if not match:
            raise MigrationError(f"version {version:03d} has no {variant} variant")
        chosen.append(match[0])
    return chosen


def choose_variant(recorded: str | None, extension_available: bool,
                   prefer: Variant | None = None) -> Variant:
    """Which TimescaleDB path a database takes.

    Once migrated, a database keeps its path: mixing them would leave
    hypertables and native partitions side by side. ``prefer`` forces a path
    for a new database (the fallback can be tested where the extension exists).
    """
    if recorded is not None:
        if recorded not in VARIANTS:
            raise MigrationError(f"schema_migrations records unknown variant {recorded!r}")
        chosen: Variant = "timescale" if recorded == "timescale" else "native"
        if prefer is not None and prefer != chosen:
            raise MigrationError(f"database already migrated for {chosen}, not {prefer}")
        return chosen
    if prefer == "timescale" and not extension_available:
        raise MigrationError("the timescaledb extension is not available in this PostgreSQL")
    if prefer is not None:
        return prefer
    return "timescale" if extension_available else "native"


def split_statements(sql: str) -> list[str]:
    """Statements of a script, split at ``;`` outside quotes, dollar quotes and comments."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            buf.append(sql[i:end])
            i = end
            continue
        if c == "'":
            end = sql.find("'", i + 1)
            while end >= 0 and sql.startswith("''", end):
                end = sql.find("'", end + 2)
            end = n if end < 0 else end + 1
            buf.append(sql[i:end])
            i = end
            continue
        if c == "$":
            tag = re.match(r"\$[A-Za-z_]*\$", sql[i:])
            if tag:
                end = sql.find(tag.group(0), i + len(tag.group(0)))
                end = n if end < 0 else end + len(tag.group(0))
                buf.append(sql[i:end])
                i = end
                continue
        if c == ";":
            out.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    out.append("".join(buf))
    return [s.strip() for s in out if _has_code(s)]


def _has_code(statement: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--")
               for line in statement.splitlines())
