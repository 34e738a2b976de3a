"""``cosmic up``: the main job — the stack, the topics, and the platform's services."""

from __future__ import annotations

import click

from cosmic import admin, logs, metrics, security, tracing
from cosmic.runtime import PlatformService, run_services
from cosmic.settings import Settings, child_env, get_settings
from cosmic.stack import Stack
from cosmic_app.cli.stack import local_secrets
from cosmic_app.cli.status import LiveTable, choose
from cosmic_app.smoke import SmokePipeline


def build_services(settings: Settings, with_jobs: tuple[str, ...] = ()) -> list[PlatformService]:
    """Every service `cosmic up` runs; later layers add theirs here."""
    import connectors
    from cosmic.lag import LagExporter
    from jobs.process import JobProcess
    from streams import living
    from streams.gateway import build_gateway
    from streams.players import SyntheticPlayers
    from streams.security.detector import CheatDetector
    from streams.worlds.worker import build_worker

    # Each service is its own Kafka identity (cosmic/acls.py), so the broker holds it to
    # what it may read and write; the smoke pipeline is a platform tool (admin). Their
    # passwords are the stack's generated ones; where the settings give one password
    # explicitly (a real cluster), only that identity is known, and every service is it.
    def as_(identity: str) -> Settings:
        return settings.as_identity(identity) if settings.kafka.sasl_password is None else settings

    return [SmokePipeline(settings), build_worker(as_("physics")), SyntheticPlayers(as_("players")),
            *living.build_services(as_("living")),
            *(connectors.build(name, as_("connectors")) for name in connectors.NAMES),
            build_gateway(as_("gateway")), CheatDetector(as_("detector")),
            LagExporter(settings),
            # Opt-in: a Flink job is a JVM of ~800 MB, too heavy to run by default on a small box.
            *(JobProcess(name, settings.state_dir / "jobs" / f"{name}.log",
                         env=child_env(as_("jobs"))) for name in with_jobs)]


@click.command()
@click.option("--duration", type=float, default=None,
              help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--with", "with_jobs", multiple=True, type=click.Choice(["live-metrics"]),
              help="Also run this streaming job (`cosmic jobs run NAME`). Repeatable.")
@click.option("--status", "status_mode", type=click.Choice(["auto", "live", "plain"]),
              default="auto", show_default=True,
              help="live: a table refreshed in place; plain: a line every 2 s (logs, CI); "
                   "auto: live on a terminal, plain otherwise.")
def up(duration: float | None, with_jobs: tuple[str, ...], status_mode: str) -> None:
    """Bring the stack up, create topics, and run the platform in the foreground."""
    settings = get_settings()
    if settings.log.format == "json":  # text: services' warnings go to stderr as they are
        logs.configure(settings, "platform")
    Stack(settings).up(on_event=lambda m: click.echo(m))
    click.echo(local_secrets(settings))
    for line in admin.reconcile_topics(settings):
        click.echo(f"topics: {line}")
    if settings.kafka.secured:
        # The services below run as their own identities: their grants must be in place.
        for line in security.reconcile_acls(settings):
            click.echo(f"acls: {line}")
    g = settings.gateway
    web = f"{'https' if g.tls else 'http'}://{g.host}:{g.http_port}/"
    click.echo(f"viewer: {web}?token=TOKEN (open it in a browser)")
    click.echo(f"gateway: {web} (REST /api/v1, WebSocket /ws, "
               f"OpenAPI /openapi.json, API docs /docs), gRPC {g.host}:{g.grpc_port}"
               f"{' over TLS' if g.tls else ''}; a "
               "development token: cosmic auth token --player NAME")
    endpoint = metrics.serve(settings, "platform")
    click.echo(f"metrics: {endpoint.url}")
    traces = tracing.configure(settings, "platform")
    if traces is not None:
        click.echo(f"traces: {settings.tracing.exporter} {settings.tracing.endpoint}")
    try:
        services = build_services(settings, with_jobs)
        if choose(status_mode) == "live":
            with LiveTable() as table:
                run_services(services, duration_s=duration, echo=table.echo,
                             render=table.render)
        else:
            run_services(services, duration_s=duration, echo=click.echo)
    finally:
        endpoint.close()
        if traces is not None:
            traces.shutdown()
    click.echo("platform stopped cleanly")
