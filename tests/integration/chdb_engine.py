"""A current ClickHouse engine in-process (``chdb``), behind clickhouse-driver's client face.

The production code talks to ClickHouse through ``clickhouse_driver.Client``
(``execute(query, params, columnar=...)``, ``disconnect()``). :class:`ChdbClient`
answers the same calls from an embedded engine, so the connector, the
migrations and the warehouse writer run unchanged on both the stack's server and
a current release:

- parameters are substituted by the driver's own escaping (the driver substitutes
  client-side too, so both engines receive the same SQL text);
- ``INSERT ... VALUES`` with data becomes one ``VALUES (...), (...)`` statement,
  each value escaped the same way (rows, or columns with ``columnar=True``);
- a SELECT's rows come back typed as the driver types them (``Date`` as a date,
  ``DateTime('UTC')`` as an aware datetime, NULL as None).

:class:`Recording` wraps either client and keeps every statement it was given
(before substitution), so a test can show that each one ran on each engine.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from clickhouse_driver.util.escape import escape_param, escape_params

# escape_param asks the connection for the server's time zone (to render aware datetimes).
_CONTEXT = SimpleNamespace(server_info=SimpleNamespace(get_timezone=lambda: "UTC"))
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+.*\bVALUES\s*$", re.I | re.S)
_WRAPPER = re.compile(r"^(Nullable|LowCardinality)\((.*)\)$")


class ChdbError(Exception):
    """The embedded engine refused a statement (its message says why)."""


class ChdbClient:
    """An embedded ClickHouse with state under ``path``, in database ``database``."""

    def __init__(self, path: Path, database: str) -> None:
        # Imported here: the engine maps ~280 MB into the process, only for the tests using it.
        import chdb.session

        self._session = chdb.session.Session(str(path))
        self._session.query(f"CREATE DATABASE IF NOT EXISTS {database}")
        self._session.query(f"USE {database}")

    def execute(self, query: str, params: Any = None, *, columnar: bool = False,
                **_: Any) -> list[tuple[Any, ...]]:
        if _INSERT.match(query) and params is not None:
            rows = list(zip(*params, strict=True)) if columnar else [tuple(r) for r in params]
            if not rows:
                return []
            values = ", ".join("(" + ", ".join(str(escape_param(v, _CONTEXT)) for v in row) + ")"
                               for row in rows)
            return self._run(f"{query} {values}")
        if params:
            query = query % escape_params(params, _CONTEXT)
        return self._run(query)

    def disconnect(self) -> None:
        """Nothing to close per statement: the session lives until :meth:`close`."""

    def close(self) -> None:
        self._session.close()

    def _run(self, sql: str) -> list[tuple[Any, ...]]:
        is_select = re.match(r"^\s*(SELECT|SHOW|DESCRIBE|EXISTS)\b", sql, re.I) is not None
        try:
            res = self._session.query(sql, "JSONCompact" if is_select else "CSV")
        except Exception as exc:  # noqa: BLE001 - chdb raises a bare RuntimeError
            raise ChdbError(f"{exc}\n-- in: {sql[:400]}") from None
        if not is_select:
            return []
        out = json.loads(res.bytes() or b'{"meta": [], "data": []}')
        types = [m["type"] for m in out["meta"]]
        return [tuple(_typed(v, t) for v, t in zip(row, types, strict=True))
                for row in out["data"]]


def _typed(value: Any, ch_type: str) -> Any:
    """A JSONCompact value as clickhouse-driver would hand it over."""
    m = _WRAPPER.match(ch_type)
    if m:
        return None if value is None else _typed(value, m.group(2))
    if ch_type.startswith(("Int", "UInt")):
        return int(value)
    if ch_type.startswith("Float"):
        return float(value)
    if ch_type in ("Date", "Date32"):
        return date.fromisoformat(value)
    if ch_type.startswith("DateTime"):
        moment = datetime.fromisoformat(value)
        # DateTime('UTC') arrives aware from the driver, a bare DateTime naive.
        return moment.replace(tzinfo=UTC) if "(" in ch_type else moment
    return value


class Recording:
    """A client that keeps every statement it runs (the text before substitution)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.statements: list[str] = []

    def execute(self, query: str, params: Any = None, **kwargs: Any) -> Any:
        self.statements.append(query)
        return self.client.execute(query, params, **kwargs)

    def disconnect(self) -> None:
        self.client.disconnect()
