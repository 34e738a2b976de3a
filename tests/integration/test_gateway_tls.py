"""The gateway over TLS (gateway.tls): HTTPS, WSS and gRPC with a development certificate
from the stack's CA, verified by that CA; a client that does not trust it, or speaks
plaintext to it, gets nothing."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import grpc
import httpx
import pytest

from cosmic import tls
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.registry.client import RegistryClient
from streams.gateway import build_gateway
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.client import GrpcClient
from streams.gateway.testing import stack_token

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_every_face_speaks_tls_verified_by_the_stack_ca(settings: Settings, stack: Stack):
    s = settings.model_copy(update={"gateway": settings.gateway.model_copy(
        update={"grpc_port": 0, "http_port": 0, "tls": True})})
    registry = RegistryClient.from_settings(s)
    gateway = build_gateway(s, registry)
    gateway.start()
    try:
        assert gateway.wait_ready(120), gateway.failure()
        ca = tls.ca_path(s.state_dir)
        url = gateway.http_url
        assert url.startswith("https://")
        token = stack_token(s, "tls-tester")
        auth = {"Authorization": f"Bearer {token}"}
        # HTTPS, verified by the stack's CA: the worlds list and the OpenAPI document.
        with httpx.Client(verify=str(ca), timeout=10) as http:
            assert http.get(f"{url}api/v1/worlds", headers=auth).status_code == 200
            assert http.get(f"{url}openapi.json").json()["openapi"].startswith("3.")
        # Without the CA the certificate is refused; plaintext to the port gets no answer.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}api/v1/worlds", timeout=10)
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "api/v1/worlds", timeout=10)
        replies = asyncio.run(_grpc_and_wss(gateway.grpc_address, url, token, ca))
        assert replies["grpc"] is not None
        assert replies["untrusted"] == grpc.StatusCode.UNAVAILABLE
        assert replies["wss"] == "open"
    finally:
        gateway.stop()
        registry.close()
    assert gateway.failure() is None


async def _grpc_and_wss(address: str, url: str, token: str, ca) -> dict:
    out: dict = {}
    async with GrpcClient(address, token=token, ca=ca) as gw:
        out["grpc"] = await gw.worlds()
    async with GrpcClient(address, token=token, ca=True) as untrusted:  # system roots only
        try:
            await asyncio.wait_for(untrusted.worlds(), 20)
            out["untrusted"] = None
        except grpc.aio.AioRpcError as exc:
            out["untrusted"] = exc.code()
    context = ssl.create_default_context(cafile=str(ca))
    async with aiohttp.ClientSession() as session, session.ws_connect(
            url.replace("https://", "wss://") + "ws", ssl=context,
            headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send_bytes(pb.ClientMessage().SerializeToString())
        out["wss"] = "closed" if ws.closed else "open"
    return out
