"""``cosmic gateway run`` and ``cosmic watch``: the front door, and a terminal view through it."""

from __future__ import annotations

import asyncio
import contextlib

import click

from cosmic import logs, metrics, tracing
from cosmic.runtime import run_services
from cosmic.settings import get_settings


@click.group()
def gateway() -> None:
    """The gateway for game frontends: gRPC, WebSocket and REST over one core."""


@gateway.command()
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def run(duration: float | None) -> None:
    """Serve until Ctrl-C (ports from COSMIC_GATEWAY__*)."""
    from streams.gateway import build_gateway

    settings = get_settings()
    logs.configure(settings, "gateway")
    traces = tracing.configure(settings, "gateway")
    service = build_gateway(settings)
    endpoint = metrics.serve(settings, "gateway")
    try:
        run_services([service], duration_s=duration, echo=click.echo)
    finally:
        endpoint.close()
        if traces is not None:
            traces.shutdown()


def _vector(text: str) -> tuple[float, float, float]:
    try:
        x, y, z = (float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected x,y,z, got {text!r}") from None
    return x, y, z


@click.command()
@click.option("--world", "world_id", required=True, help="World to watch.")
@click.option("--center", default="0,0,0", show_default=True, help="Centre of the view, x,y,z.")
@click.option("--radius", type=float, default=10.0, show_default=True, help="Radius of the view.")
@click.option("--lines", type=int, default=None, help="Stop after this many lines.")
@click.option("--gateway", "address", default=None,
              help="gRPC address of a gateway [default: from settings].")
@click.option("--token", default=None,
              help="Bearer token [default: a development token for player 'watcher', minted "
                   "with the local stack's key].")
def watch(world_id: str, center: str, radius: float, lines: int | None, address: str | None,
          token: str | None) -> None:
    """A terminal view of a subscription: bodies in view, enters/leaves, bytes/s, latency."""
    from streams.gateway.client import GrpcClient, subscribe_request
    from streams.gateway.testing import stack_token
    from streams.gateway.watch import watch as watch_frames

    settings = get_settings()
    g = settings.gateway
    target = address or f"{g.host}:{g.grpc_port}"
    request = subscribe_request(world_id, _vector(center), radius)
    bearer = token or stack_token(settings, "watcher")

    async def go() -> None:
        async with GrpcClient(target, token=bearer) as client:
            await watch_frames(client.frames(request), click.echo, max_lines=lines)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the view
        asyncio.run(go())
