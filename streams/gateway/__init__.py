"""The gateway: the front door for game frontends, who never talk to Kafka.

One core, several faces (issue 13). Reading guide:

1. ``schemas/gateway.proto``: the contract (frames, views, the RPCs).
2. :mod:`.world`: a world's deltas folded in and quantized once per tick (the
   error bound is documented there).
3. :mod:`.session`: one client's view, baseline, budget and priorities;
   :mod:`.framing`: its frame as numba kernels that write the wire bytes.
4. :mod:`.core`: subscriptions, snapshots and command submission, on one loop.
5. :mod:`.outcomes`: what became of each admitted command (applied at a tick,
   rejected and why), and each command id appended once.
6. :mod:`.log`: the Kafka side (one reader of deltas, ticks and rejections; one
   command producer).
7. :mod:`.grpc_face`, :mod:`.ws_face`, :mod:`.rest`: thin adapters; :mod:`.errors`
   holds the one table from domain errors to gRPC codes, WebSocket close codes and
   HTTP problems.
8. :mod:`.replica`: a frontend's copy rebuilt from frames (the reference decoder).
9. :mod:`.viewer`: the browser viewer (``web/viewer``, bundled by
   ``scripts/build-viewer``) at ``/`` and the API page at ``/docs``.

``build_gateway(settings)`` is the service; ``main()`` runs it until Ctrl-C.
"""

from __future__ import annotations

import logging

from cosmic.errors import DependencyMissing


def _check_generated() -> None:
    try:
        from ._proto import gateway_pb2  # noqa: F401
    except ImportError:
        raise DependencyMissing(
            "streams/gateway/_proto (generated code)",
            "run scripts/gen-protos (infra/local/install.sh does)") from None


_check_generated()

from .service import GatewayService, build_gateway  # noqa: E402


def main() -> None:
    """Run the gateway with the process's settings until Ctrl-C."""
    from cosmic.runtime import run_services
    from cosmic.settings import get_settings

    logging.basicConfig(level=logging.INFO)
    service = build_gateway(get_settings())
    run_services([service], duration_s=None, echo=print)


__all__ = ["GatewayService", "build_gateway", "main"]
