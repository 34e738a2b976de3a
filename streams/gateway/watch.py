"""A terminal view of one subscription: what ``cosmic watch`` is to print.

Once a second: the tick, bodies in view, enters and leaves in that second,
bytes per second received, and the latency from the tick's production to its
frame's arrival (p50 / max over the second). The CLI wires it in later
(``cosmic watch --world W [--center x,y,z --radius r]``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from cosmic.timeutil import now_ms

from ._proto import gateway_pb2 as pb
from .replica import Replica


@dataclass
class WatchLine:
    tick: int = 0
    bodies: int = 0
    enters: int = 0
    leaves: int = 0
    bytes: int = 0
    latencies_ms: list[int] = field(default_factory=list)

    def render(self, seconds: float) -> str:
        lat = sorted(self.latencies_ms) or [0]
        return (f"tick {self.tick}  bodies {self.bodies}  +{self.enters} -{self.leaves}  "
                f"{self.bytes / max(seconds, 1e-9):,.0f} B/s  "
                f"latency p50 {lat[len(lat) // 2]} ms max {lat[-1]} ms")


async def watch(frames: AsyncIterator[bytes], echo: Callable[[str], None], *,
                every_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
                max_lines: int | None = None) -> Replica:
    """Print one line per ``every_s`` of ``frames``; returns the replica at the end."""
    replica = Replica()
    line, started, lines = WatchLine(), clock(), 0
    async for data in frames:
        frame = pb.Frame.FromString(data)
        replica.apply(frame)
        line.tick, line.bodies = frame.tick, len(replica.bodies)
        line.enters += len(frame.enter.ids)
        line.leaves += len(frame.leave)
        line.bytes += len(data)
        line.latencies_ms.append(max(0, now_ms() - frame.produced_ms))
        if (elapsed := clock() - started) >= every_s:
            echo(line.render(elapsed))
            line, started, lines = WatchLine(), clock(), lines + 1
            if max_lines is not None and lines >= max_lines:
                break
    return replica
