"""ClickHouse server from Debian's package, configured into the state folder, on loopback.

Debian 12 ships ClickHouse 18.16, whose config root element is ``<yandex>``
(current releases still accept it). The package's init script is disabled in
containers, so the binary is started directly with a generated config.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from clickhouse_driver import Client

from cosmic import secrets
from cosmic.errors import DependencyMissing
from cosmic.stack.service import LocalService

_CONFIG = """\
<?xml version="1.0"?>
<!-- written by cosmic stack; edits are overwritten on start -->
<yandex>
    <logger>
        <level>warning</level>
        <console>1</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>{path}/</path>
    <tmp_path>{path}/tmp/</tmp_path>
    <user_files_path>{path}/user_files/</user_files_path>
    <format_schema_path>{path}/format_schemas/</format_schema_path>
    <users_config>{users}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
"""

_USERS = """\
<?xml version="1.0"?>
<!-- written by cosmic stack; edits are overwritten on start -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <{user}>
            <password_sha256_hex>{password_sha256}</password_sha256_hex>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </{user}>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


def clickhouse_server_bin() -> str:
    for name in ("clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        if found := shutil.which(name):
            return found
    raise DependencyMissing("clickhouse-server",
                            "install it with `apt-get install clickhouse-server`")


class ClickHouseService(LocalService):
    name = "clickhouse"

    @property
    def port(self) -> int:
        return self.settings.clickhouse.port

    @property
    def _config_file(self) -> Path:
        return self.home / "config.xml"

    def endpoint(self) -> dict[str, Any]:
        ch = self.settings.clickhouse
        return {"host": ch.host, "port": ch.port, "http_port": ch.http_port,
                "database": ch.database}

    def prepare(self) -> None:
        data = self.home / "data"
        for sub in ("tmp", "user_files", "format_schemas"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        ch = self.settings.clickhouse
        if ch.password is None:
            secrets.ensure(self.settings.state_dir, "clickhouse", ch.user)
        users = self.home / "users.xml"
        # Only the password's hash goes into the server's files, and those are private.
        digest = hashlib.sha256(ch.secret().encode()).hexdigest()
        users.touch(mode=0o600)
        os.chmod(users, 0o600)
        users.write_text(_USERS.format(user=ch.user, password_sha256=digest))
        self._config_file.write_text(_CONFIG.format(
            tcp_port=ch.port, http_port=ch.http_port, path=data, users=users))

    def command(self) -> list[str]:
        return [clickhouse_server_bin(), f"--config-file={self._config_file}"]

    def executable(self) -> str:
        return "clickhouse-server"

    def client(self, timeout_s: float = 5.0, database: str = "default") -> Client:
        ch = self.settings.clickhouse
        return Client(
            host=ch.host, port=ch.port, user=ch.user,
            password=ch.secret(), database=database,
            connect_timeout=timeout_s, send_receive_timeout=max(timeout_s, 10),
        )

    def probe(self, timeout_s: float) -> None:
        # The driver logs every refused connection with a traceback; a probe expects them.
        logging.getLogger("clickhouse_driver.connection").setLevel(logging.CRITICAL)
        client = self.client(timeout_s)
        try:
            client.execute("SELECT 1")
        finally:
            client.disconnect()

    def after_ready(self) -> None:
        client = self.client(10)
        try:
            client.execute(f"CREATE DATABASE IF NOT EXISTS {self.settings.clickhouse.database}")
        finally:
            client.disconnect()

    def version(self) -> str | None:
        client = self.client(3)
        try:
            rows = client.execute("SELECT version()")
        finally:
            client.disconnect()
        return str(rows[0][0]) if rows else None
