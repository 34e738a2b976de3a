"""The store clients that the sinks and the jobs share: ClickHouse and PostgreSQL.

Whatever talks to a store (a sink, the Spark warehouse job, the Flink live
metrics job, the ``cosmic db`` commands) opens its client and runs its
statements through here, so a store's failures reach every caller as the same
typed errors of :mod:`connectors.errors`:

- :class:`~connectors.errors.StoreUnavailable`: the server did not answer or
  dropped the connection (retry with backoff);
- :class:`~connectors.errors.StoreRejected`: a value the column cannot hold
  (dead-letter it; retrying cannot help);
- :class:`~connectors.errors.StoreError`: any other refusal (a bad statement).

ClickHouse::

    cl = clickhouse_client(settings)
    try:
        clickhouse_execute(cl, "INSERT INTO t (a, b) VALUES", [[1, 2], ["x", "y"]], columnar=True)
        (n,), = clickhouse_execute(cl, "SELECT count() FROM t")
    finally:
        cl.disconnect()

PostgreSQL: ``with postgres_connect(settings) as conn: ...`` (autocommit; the
caller opens its own transactions), or ``postgres_connect(dsn)`` where only a
DSN travels (a Flink operator).
"""

from __future__ import annotations

from typing import Any

import psycopg
from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from connectors.errors import StoreError, StoreRejected, StoreUnavailable
from cosmic.breaker import breaker
from cosmic.settings import Settings

PostgresConnection = psycopg.Connection[tuple[Any, ...]]

# What a dead or restarting ClickHouse server looks like through the driver.
_CH_UNAVAILABLE = (ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError, OSError)
# What a value the column cannot hold looks like (raised client-side, while encoding).
_CH_REJECTED = (ch_errors.TypeMismatchError, ch_errors.CannotParseUuidError,
                ch_errors.TooLargeStringSize)


def clickhouse_client(settings: Settings) -> Client:
    """A native-protocol client for ``settings.clickhouse``; it connects on first use."""
    ch = settings.clickhouse
    return Client(host=ch.host, port=ch.port, user=ch.user,
                  password=ch.secret(), database=ch.database,
                  connect_timeout=5, send_receive_timeout=60)


def clickhouse_execute(cl: Client, query: str, params: Any = None, **kwargs: Any) -> Any:
    """``cl.execute(query, params, **kwargs)``, its failures as :mod:`connectors.errors`.

    Returns what the driver returns (a list of row tuples for a SELECT). After a
    lost connection the client is disconnected, so the next call reconnects.
    """
    circuit = breaker("clickhouse", _clickhouse_target(cl))
    if (wait_s := circuit.allow()) is not None:
        raise StoreUnavailable(circuit.refusal(wait_s))
    try:
        result = cl.execute(query, params, **kwargs)
    except _CH_UNAVAILABLE as exc:
        cl.disconnect()
        circuit.failed(f"{type(exc).__name__}: {exc}")
        raise StoreUnavailable(f"ClickHouse: {type(exc).__name__}: {exc}") from None
    except _CH_REJECTED as exc:
        # The driver converts values before sending: nothing of the insert was sent.
        circuit.succeeded()
        raise StoreRejected(f"ClickHouse refused a value: {type(exc).__name__}: {exc}") from None
    except ch_errors.Error as exc:
        circuit.succeeded()  # it answered: up, whatever it said
        raise StoreError(f"ClickHouse refused {query.split('(')[0].strip()[:80]!r}: {exc}") from None
    circuit.succeeded()
    return result


def _clickhouse_target(cl: Any) -> str:
    """The servers a client talks to, for its breaker: the driver rotates its hosts on
    failover, so the set, not the current one (a client of another kind: its type)."""
    hosts = getattr(getattr(cl, "connection", None), "hosts", None)
    if not hosts:
        return type(cl).__name__
    return ",".join(sorted(f"{h}:{p}" for h, p in hosts))


def postgres_connect(target: Settings | str, *, connect_timeout: int = 5) -> PostgresConnection:
    """An autocommit connection to ``settings.postgres`` (or to a DSN string); while the
    server is found down, further connects fail fast (:mod:`cosmic.breaker`)."""
    dsn = target.postgres.dsn if isinstance(target, Settings) else target
    where = (f"{target.postgres.host}:{target.postgres.port}"
             if isinstance(target, Settings) else _dsn_target(dsn))
    circuit = breaker("postgres", where)
    if (wait_s := circuit.allow()) is not None:
        raise StoreUnavailable(circuit.refusal(wait_s))
    try:
        conn = psycopg.connect(dsn, connect_timeout=connect_timeout, autocommit=True)
    except psycopg.OperationalError as exc:
        circuit.failed(exc)
        raise StoreUnavailable(f"PostgreSQL at {where}: {exc}") from None
    circuit.succeeded()
    return conn


def _dsn_target(dsn: str) -> str:
    """host:port of a DSN (without its credentials), for the breaker and messages."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"


__all__ = ["PostgresConnection", "clickhouse_client", "clickhouse_execute", "postgres_connect"]
