"""The shared store clients report a store that is not there as StoreUnavailable."""

from __future__ import annotations

import socket

import pytest

from connectors.errors import StoreUnavailable
from connectors.stores import clickhouse_client, clickhouse_execute, postgres_connect
from cosmic.settings import Settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_clickhouse_down_is_unavailable_not_a_driver_error() -> None:
    port = _closed_port()
    settings = Settings(clickhouse={"host": "127.0.0.1", "port": port})
    cl = clickhouse_client(settings)
    try:
        with pytest.raises(StoreUnavailable, match="ClickHouse"):
            clickhouse_execute(cl, "SELECT 1")
    finally:
        cl.disconnect()


def test_postgres_down_names_the_address() -> None:
    port = _closed_port()
    with pytest.raises(StoreUnavailable, match=f"PostgreSQL at 127.0.0.1:{port}"):
        postgres_connect(Settings(postgres={"host": "127.0.0.1", "port": port}))


def test_postgres_down_by_dsn_does_not_echo_the_password() -> None:
    port = _closed_port()
    with pytest.raises(StoreUnavailable) as caught:
        postgres_connect(f"postgresql://u:s3cret@127.0.0.1:{port}/db", connect_timeout=2)
    assert "s3cret" not in str(caught.value)
