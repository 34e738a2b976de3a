"""``cosmic stack``: install, start, stop and inspect the local services."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import click
import orjson

from cosmic.settings import KafkaSettings, Settings, get_settings
from cosmic.stack import Stack
from cosmic.stack.artifacts import INFRA_LOCAL
from cosmic.stack.kafka import KafkaService


def _stack() -> Stack:
    return Stack(get_settings())


@click.group()
def stack() -> None:
    """The local stack: Kafka (KRaft), PostgreSQL, ClickHouse, as local processes."""


@stack.command()
@click.option("--system/--no-system", default=True,
              help="Also install system packages with apt (needs root).")
def install(system: bool) -> None:
    """Install what the stack needs: system packages, then Kafka's JARs (cached)."""
    if system:
        script = INFRA_LOCAL / "install.sh"
        click.echo(f"running {script}")
        subprocess.run(["bash", str(script), "--system-only"], check=True)
    st = _stack()
    click.echo("resolving Kafka artifacts (first time: a minute or two)…")
    st.install()
    click.echo(f"kafka jars cached in {st.service('kafka').lib_dir}")  # type: ignore[attr-defined]


@stack.command()
@click.option("--kafka-brokers", type=click.IntRange(1, 9), default=None,
              help="KRaft nodes of the local Kafka (as COSMIC_KAFKA__BROKERS): 3 for a "
                   "replicated cluster (replication factor 3, min.insync.replicas 2). "
                   "Fixed when Kafka's storage is first formatted.")
def up(kafka_brokers: int | None) -> None:
    """Start every service (idempotent) and wait until each answers."""
    settings = get_settings()
    if kafka_brokers is not None and kafka_brokers != settings.kafka.brokers:
        kafka = KafkaSettings.model_validate(
            settings.kafka.model_dump(exclude_unset=True) | {"brokers": kafka_brokers})
        settings = settings.with_overrides(kafka=kafka)
    st = Stack(settings)
    t0 = time.monotonic()
    st.up(on_event=lambda msg: click.echo(msg))
    click.echo(local_secrets(st.settings))
    click.echo(f"stack is up in {time.monotonic() - t0:.1f}s (state: {st.settings.state_dir})")
    if st.settings.kafka.brokers > 1 and os.environ.get("COSMIC_KAFKA__BROKERS") is None:
        click.echo(f"kafka: {st.settings.kafka.brokers} nodes at "
                   f"{st.settings.kafka.bootstrap_servers}; for the platform's processes, "
                   f"export COSMIC_KAFKA__BROKERS={st.settings.kafka.brokers}")


def local_secrets(settings: Settings) -> str:
    """Make the platform's keys under the state folder if missing (mode 0600): the token
    signing key pair and the command keys; one line saying where they are."""
    from streams.security import signing, tokens

    keys = tokens.TokenKeys.for_settings(settings)
    signing.KeyRing.for_settings(settings)
    return (f"secrets: token key {keys.signing_kid} and command keys in "
            f"{tokens.secrets_dir(settings)}")


@stack.command()
def down() -> None:
    """Stop the services this stack started (by PID)."""
    _stack().down(on_event=lambda msg: click.echo(msg))


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(as_json: bool) -> None:
    """Each service with its version, port, PID, memory and endpoint."""
    rows = _stack().status()
    if as_json:
        payload = {r.name: r.to_dict() for r in rows}
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    header = f"{'service':<12}{'state':<10}{'version':<22}{'port':<8}{'pid':<9}{'rss MiB':>9}"
    click.echo(header)
    total = 0.0
    for r in rows:
        rss = f"{r.rss_mib:.0f}" if r.rss_mib is not None else "-"
        total += r.rss_mib or 0.0
        click.echo(
            f"{r.name:<12}{'running' if r.running else 'stopped':<10}{(r.version or '-'):<22}"
            f"{r.port:<8}{(r.pid or '-')!s:<9}{rss:>9}"
        )
        for note in r.notes:
            click.echo(f"{'':<12}note: {note}")
    click.echo(f"{'total':<61}{total:>9.0f}")


@stack.command()
@click.argument("service")
@click.option("-n", "--lines", default=50, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
def logs(service: str, lines: int, follow: bool) -> None:
    """Print the end of SERVICE's log file."""
    svc = _stack().service(service)
    click.echo(f"# {svc.log_file}", err=True)
    if not svc.log_file.exists():
        click.echo(f"{service} has no log yet", err=True)
        return
    cmd = ["tail", "-n", str(lines), *(["-F"] if follow else []), str(svc.log_file)]
    os.execvp("tail", cmd)


@stack.command("secrets")
@click.option("--env", "as_env", is_flag=True, required=True,
              help="Print them as KEY=VALUE lines (a .env file for docker compose).")
def secrets_(as_env: bool) -> None:
    """The stack's generated passwords (made where missing), for docker-compose.kafka.yml.

    Example: cosmic stack secrets --env > .env && docker compose -f docker-compose.kafka.yml up -d
    """
    from cosmic import acls, secrets

    s = get_settings()
    env = secrets.compose_env(
        s.state_dir, [i.name for i in acls.identities(s)],
        {"postgres": s.postgres.user, "clickhouse": s.clickhouse.user,
         "registry": s.registry.username})
    click.echo("\n".join(f"{key}={value}" for key, value in env.items()))


@stack.command(
    "kafka-tool",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kafka_tool(name: str, args: tuple[str, ...]) -> None:
    """Run one of Kafka's own tools (e.g. producer-perf-test, consumer-groups).

    The bootstrap server is added unless given. Example:
    cosmic stack kafka-tool consumer-groups --list
    """
    svc = KafkaService(get_settings())
    cmd = svc.tool_command(name, list(args))
    sys.exit(subprocess.call(cmd))
