"""permessage-deflate through ISA-L instead of zlib.

Each WebSocket client has its own deflate stream (context takeover), so the
gateway deflates every frame of every client: at a thousand clients that is
most of a core with zlib. ISA-L's deflate (``isal``, the same API as
:mod:`zlib`) writes the same format, which every client's inflater reads, in a
third to a half of zlib's time at the same ratio (``bench/gateway.py
--websocket`` prints the figure of the run; ``tests/unit/test_gateway_deflate.py``
proves that zlib inflates what it writes, frame after frame).

aiohttp takes one deflate implementation for the whole process; it asks the
implementation for ``Z_BEST_SPEED`` and nothing else, which is ISA-L's level 0
(a greedy matcher that leaves frames at about three quarters of their size).
Level 1 costs little more and compresses as zlib's fastest level does, so the
backend handed to aiohttp names that level its fastest.

Why each client keeps its own stream, although clients that hold the same share
one frame (:class:`.session.SharedFrames`): deflated bytes could be shared only
if each message were deflated without the previous ones' window (any receiver
inflates such a message, whatever was negotiated), and on the bench's frames
that costs a third more time per message and leaves them at 918 B instead of
580 B (1,172 B raw): a tick's frame repeats much of the last one, which is what
the window finds. Shared compressed bytes pay only where many clients share a
frame, which per-client baselines make rare (see :mod:`.session`).
"""

from __future__ import annotations

from isal import isal_zlib


class IsalBackend:
    """ISA-L's zlib interface, with ``Z_BEST_SPEED`` meaning ISA-L's level 1."""

    __name__ = "isal_zlib"
    MAX_WBITS = isal_zlib.MAX_WBITS
    Z_FULL_FLUSH = isal_zlib.Z_FULL_FLUSH
    Z_SYNC_FLUSH = isal_zlib.Z_SYNC_FLUSH
    Z_FINISH = isal_zlib.Z_FINISH
    Z_BEST_SPEED = 1

    compressobj = staticmethod(isal_zlib.compressobj)
    decompressobj = staticmethod(isal_zlib.decompressobj)
    compress = staticmethod(isal_zlib.compress)
    decompress = staticmethod(isal_zlib.decompress)


BACKEND = IsalBackend()


def install() -> None:
    """Make aiohttp deflate (and inflate) through ISA-L, in this process. Idempotent."""
    from aiohttp import compression_utils, set_zlib_backend

    if compression_utils.ZLibBackend._zlib_backend is not BACKEND:
        set_zlib_backend(BACKEND)
