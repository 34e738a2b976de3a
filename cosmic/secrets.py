"""Generated passwords of the local stack, kept under ``<state_dir>/secrets`` (mode 0600).

The local stack makes one password per identity the first time a service is
prepared (Kafka's SCRAM users, the registry's writer, PostgreSQL's and
ClickHouse's users) and every client reads the same file back through
:mod:`cosmic.settings`, so no password is ever typed, logged or committed.
A password set explicitly in the settings (a real cluster's) wins over the
file; the stack never writes one for such a deployment.

Layout: ``<state_dir>/secrets/<service>/<name>``, e.g. ``secrets/kafka/physics``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cosmic.errors import ConfigError

# URL-safe and free of quotes and backslashes, so a password can sit in a JAAS line,
# a DSN or an XML file without escaping; 32 bytes of entropy.
_TOKEN_BYTES = 32


def path(state_dir: Path, service: str, name: str) -> Path:
    return state_dir / "secrets" / service / name


def read(state_dir: Path, service: str, name: str) -> str:
    """The stored password, or :class:`ConfigError` saying how to get one."""
    where = path(state_dir, service, name)
    try:
        return where.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(
            f"no {service} password for {name!r} at {where}: start the local stack "
            f"(`cosmic stack up`) with this state folder, or set the password in the "
            f"settings (see cosmic/settings.py)"
        ) from None


def ensure(state_dir: Path, service: str, name: str) -> str:
    """The stored password, generated (mode 0600, folders 0700) if there is none yet."""
    where = path(state_dir, service, name)
    if where.exists():
        return where.read_text().strip()
    where.parent.mkdir(parents=True, exist_ok=True)
    for folder in (where.parent, where.parent.parent):
        os.chmod(folder, 0o700)
    value = secrets.token_urlsafe(_TOKEN_BYTES)
    # O_EXCL: two processes preparing at once must not both write (one would lose).
    try:
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return where.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def compose_env(state_dir: Path, identities: list[str], users: dict[str, str]) -> dict[str, str]:
    """The passwords as the environment ``docker-compose.kafka.yml`` reads, made where
    missing: the containers and the platform's own clients (which read these files)
    then share one set. ``users`` maps a service (postgres, clickhouse, registry) to
    its user name."""
    env = {f"COSMIC_KAFKA_PASSWORD_{name.upper()}": ensure(state_dir, "kafka", name)
           for name in identities}
    for service, user in users.items():
        env[f"COSMIC_{service.upper()}_PASSWORD"] = ensure(state_dir, service, user)
    return env
