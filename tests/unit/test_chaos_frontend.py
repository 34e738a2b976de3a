"""The gateway row's frontend keeps a command going when the channel under it is closed.

The frontend closes a gateway's channel when one call on it fails; a call another task
starts on that channel a moment later fails with grpc's UsageError before it reaches any
gateway. That must read as "ask again on a fresh channel", never as the end of the
world's submissions (it once failed a broker-restart cell in CI)."""
from __future__ import annotations

import asyncio
import threading
import time
import uuid

import grpc
import pytest

from cosmic_app.chaos.gateway import Command, Frontend
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.client import SERVICE, GrpcClient


class _Gateway:
    """A gRPC server on loopback that appends every command and applies it at tick 7."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.server: grpc.aio.Server | None = None

    async def start(self) -> int:
        async def submit(request: bytes, context: object) -> bytes:
            self.submitted.append(pb.SubmitCommandRequest.FromString(request).command_id)
            return pb.SubmitCommandReply().SerializeToString()

        async def outcome(request: bytes, context: object) -> bytes:
            return pb.CommandOutcome(state=pb.CommandOutcome.APPLIED, tick=7
                                     ).SerializeToString()

        handlers = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in
                    (("SubmitCommand", submit), ("GetOutcome", outcome))}
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port


@pytest.fixture
def gateway():
    gw = _Gateway()
    loop = asyncio.new_event_loop()
    port = loop.run_until_complete(gw.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield gw, f"127.0.0.1:{port}"
    assert gw.server is not None
    asyncio.run_coroutine_threadsafe(gw.server.stop(None), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _closed_client(frontend: Frontend, address: str) -> GrpcClient:
    async def make() -> GrpcClient:
        client = GrpcClient(address, token="t")
        await client.channel.close()
        frontend._clients[address] = client
        return client
    return asyncio.run_coroutine_threadsafe(make(), frontend._loop).result(10)


def test_a_call_on_a_closed_channel_is_asked_again_on_a_fresh_one(gateway):
    gw, address = gateway
    frontend = Frontend(["w1"], token=lambda: "t")
    try:
        stale = _closed_client(frontend, address)
        frontend.add_gateway(address)
        command = Command("w1", 1, uuid.uuid4(), {"kind": "noop"})
        frontend.send(command)
        deadline = time.monotonic() + 20
        while command.command_id not in frontend.answers and frontend.fatal is None:
            assert time.monotonic() < deadline, "no answer in 20 s"
            time.sleep(0.05)
        assert frontend.fatal is None
        assert frontend.answers[command.command_id].applied
        assert frontend.answers[command.command_id].tick == 7
        assert gw.submitted == [str(command.command_id)]  # once: the closed call sent nothing
        assert frontend._clients[address] is not stale
    finally:
        frontend.close()
