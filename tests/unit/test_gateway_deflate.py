"""The gateway deflates WebSocket frames with ISA-L: zlib (what browsers and other clients
inflate with) must read every message of a context-takeover stream back exactly."""

from __future__ import annotations

import random
import zlib

import pytest
from aiohttp import compression_utils

from streams.gateway import deflate

TRAILER = b"\x00\x00\xff\xff"  # RFC 7692: stripped by the sender, put back by the receiver


def messages(seed: int, count: int) -> list[bytes]:
    """Frames like the gateway's: protobuf-ish bytes with repeats across messages."""
    rng = random.Random(seed)
    common = bytes(rng.getrandbits(8) for _ in range(64))
    out = []
    for _ in range(count):
        size = rng.choice([0, 1, 5, 120, 1200, 9000])
        body = bytearray()
        while len(body) < size:
            body += common[: rng.randrange(1, 64)] if rng.random() < 0.3 else bytes(
                rng.getrandbits(3) for _ in range(rng.randrange(1, 40)))
        out.append(bytes(body[:size]))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_zlib_inflates_every_message_of_an_isal_stream(seed: int):
    backend = deflate.BACKEND
    # As aiohttp's WebSocket writer deflates: its fastest level, raw deflate, a sync
    # flush per message (context takeover), the trailer stripped.
    sender = backend.compressobj(level=backend.Z_BEST_SPEED, wbits=-backend.MAX_WBITS)
    receiver = zlib.decompressobj(-zlib.MAX_WBITS)
    sent = received = 0
    for message in messages(seed, 200):
        wire = sender.compress(message) + sender.flush(backend.Z_SYNC_FLUSH)
        assert wire.endswith(TRAILER)
        wire = wire[: -len(TRAILER)]
        assert receiver.decompress(wire + TRAILER) == message
        sent += len(message)
        received += len(wire)
    assert received < 0.8 * sent  # it compresses (ISA-L's level 0 would leave ~0.75)


def test_isal_inflates_what_zlib_deflates():
    backend = deflate.BACKEND
    sender = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    receiver = backend.decompressobj(wbits=-backend.MAX_WBITS)
    for message in messages(7, 100):
        wire = sender.compress(message) + sender.flush(zlib.Z_SYNC_FLUSH)
        assert receiver.decompress(wire) == message


def test_install_makes_aiohttp_use_it_and_is_idempotent():
    before = compression_utils.ZLibBackend._zlib_backend
    try:
        deflate.install()
        deflate.install()
        assert compression_utils.ZLibBackend._zlib_backend is deflate.BACKEND
        compressor = compression_utils.ZLibCompressor(
            level=compression_utils.ZLibBackend.Z_BEST_SPEED, wbits=-15)
        data = b"cosmic " * 200
        wire = compressor.compress_sync(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert zlib.decompressobj(-15).decompress(wire) == data
    finally:
        compression_utils.set_zlib_backend(before)
