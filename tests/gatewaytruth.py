"""What a gateway's clients must hold, rebuilt by the test from the world's own deltas.

:class:`Truth` reads a world's ``StateDelta`` records itself (a reader of its
own, as any frontend of the topic would) and keeps, per tick, the ids and
positions the gateway's mirror has. :func:`check_frames` replays one client's
frames against it: the client's set equals the set in its view (with the
gateway's hysteresis) at every frame, enters and leaves are exactly the change,
and positions are within the grid's bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
from confluent_kafka import TopicPartition

from cosmic import kafka, topics
from cosmic.settings import Settings
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, SerializationContext
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.replica import Replica
from streams.worlds.deltas import DeltaMirror


class Truth:
    """The world's state per tick, rebuilt from its deltas by the test itself."""

    def __init__(self, settings: Settings, registry: RegistryClient, world: str) -> None:
        self.world = world
        self.partition = kafka.home_partition(world, topics.STATE_DELTAS.partitions)
        self.ticks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._mirror = DeltaMirror()
        self._decode = AvroDeserializer(registry)
        self._consumer = kafka.reader(settings, "gateway-truth")
        tp = TopicPartition(topics.STATE_DELTAS.name, self.partition)
        _, high = self._consumer.get_watermark_offsets(tp, timeout=30)
        self._consumer.assign([TopicPartition(topics.STATE_DELTAS.name, self.partition, high)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ctx = SerializationContext(topics.STATE_DELTAS.name)
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, timeout=0.05):
                if msg.error() is not None or msg.key() != self.world.encode():
                    continue
                record = self._decode(msg.value(), ctx)
                self._mirror.apply_record(record)
                m = self._mirror
                self.ticks[record["tick"]] = (m.ids.copy(), m.predict(record["sim_time"]))

    def wait_for(self, tick: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while tick not in self.ticks:
            assert time.monotonic() < deadline, f"the test's reader never saw tick {tick}"
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def expected_set(ids: np.ndarray, positions: np.ndarray, view: pb.View, held: set[int],
                 hysteresis: float) -> set[int]:
    """The bodies a sphere view holds: inside it, or held and inside it grown."""
    center = np.array([view.center.x, view.center.y, view.center.z])
    dist = np.linalg.norm(positions - center, axis=1)
    was_held = np.isin(ids, np.fromiter(held, np.int64, len(held)))
    inside = (dist <= view.radius) | (was_held & (dist <= view.radius * (1 + hysteresis)))
    return set(ids[inside].tolist())


def check_frames(frames: list[bytes], view: pb.View | Sequence[tuple[float, pb.View]],
                 truth: Truth, hysteresis: float, bound: float | None, name: str,
                 received: Sequence[float] = (), errors: list[float] | None = None
                 ) -> Replica:
    """Replay one client's frames against the truth; return its final replica.

    ``view`` is the client's view, or, for a client that moves it, its views with the
    time each was asked for (the first at 0) and ``received`` the time each frame came
    (one clock): a frame may show any view asked for before it came and not older than
    the last one a frame showed (a move takes effect at the gateway's next frame). With
    no ``bound`` (a client whose budget does not let every update through), positions
    are not checked; membership always is. ``errors`` gets each frame's largest position
    error."""
    moves = [(0.0, view)] if isinstance(view, pb.View) else list(view)
    replica = Replica()
    shown = 0  # the index in ``moves`` of the latest view a frame has shown
    for k, data in enumerate(frames):
        frame = pb.Frame.FromString(data)
        held = set(replica.bodies)
        replica.apply(frame)
        truth.wait_for(frame.tick)
        ids, positions = truth.ticks[frame.tick]
        where = f"{name} at tick {frame.tick}"
        came = received[k] if received else 0.0
        asked = [i for i in range(shown, len(moves)) if i == shown or moves[i][0] <= came]
        mine = set(replica.bodies)
        match = [i for i in asked
                 if expected_set(ids, positions, moves[i][1], held, hysteresis) == mine]
        assert match, f"{where}: the set is that of none of the views {asked}"
        shown = match[-1]
        assert set(frame.leave) == held - mine, where
        assert set(frame.enter.ids) >= mine - held, where
        if replica.bodies and (bound is not None or errors is not None):
            order = replica.ids()
            true_pos = positions[np.searchsorted(ids, order)]
            err = float(np.linalg.norm(replica.positions() - true_pos, axis=1).max())
            if errors is not None:
                errors.append(err)
            assert bound is None or err <= bound * (1 + 1e-9), f"{where}: off by {err}"
    return replica
