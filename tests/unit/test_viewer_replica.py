"""The viewer's frame decoder and replica (web/viewer, JavaScript) against the reference
one (streams/gateway/replica.py): the same frames, with drift, spawns, removals,
mergers and a moving view, give the same bodies after every frame, in both update
encodings (PREDICTED's dead reckoning must give the same integers in both languages).

Needs Node.js and the viewer's npm packages (scripts/build-viewer installs both).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.replica import Replica
from streams.gateway.session import Subscriber
from streams.gateway.testing import SyntheticWorld
from streams.gateway.world import View

VIEWER = Path(__file__).resolve().parents[2] / "web" / "viewer"


def frames(predicted: bool) -> list[bytes]:
    world = SyntheticWorld(5, n=300)
    sub = Subscriber(View((0.0, 0.0, 0.0), 6.0), bytes_per_s=20_000, predicted=predicted)
    out = []
    rng = np.random.default_rng(6)
    for i in range(80):
        # Nudges: velocities change too, so updates carry velocity deltas.
        world.vel[i % 5::5] += rng.normal(0, 0.2, world.vel[i % 5::5].shape)
        tick = world.step()
        if i % 10 == 9:  # the view wanders: bodies enter and leave by the dozen
            sub.move(View((3.0 * np.cos(i / 10), 3.0 * np.sin(i / 10), 0.0), 5.0 + i % 3))
        out.append(sub.frame(tick).SerializeToString())
    return out


@pytest.mark.parametrize("predicted", [False, True], ids=["deltas", "predicted"])
def test_the_viewer_replica_holds_what_the_reference_holds(tmp_path: Path, predicted: bool
                                                           ) -> None:
    node = shutil.which("node")
    esbuild = VIEWER / "node_modules" / ".bin" / "esbuild"
    assert node and esbuild.exists(), "Node.js and the viewer's packages: run scripts/build-viewer"
    bundle = tmp_path / "conformance.cjs"
    subprocess.run([str(esbuild), str(VIEWER / "test" / "conformance.js"), "--bundle",
                    "--platform=node", "--loader:.proto=text", f"--outfile={bundle}",
                    "--log-level=warning"], check=True)
    data = frames(predicted)
    path = tmp_path / "frames.bin"
    path.write_bytes(b"".join(len(f).to_bytes(4, "little") + f for f in data))
    result = subprocess.run([node, str(bundle), str(path)], check=True, capture_output=True,
                            text=True, timeout=60)
    lines = result.stdout.splitlines()
    assert len(lines) == len(data)

    replica = Replica()
    mergers = leaves = 0
    for raw, line in zip(data, lines, strict=True):
        frame = pb.Frame.FromString(raw)
        held = set(replica.bodies)
        replica.apply(frame)
        js = json.loads(line)
        assert js["tick"] == replica.tick and js["simTime"] == replica.sim_time
        expected = [[i, b.kind, b.mass, b.radius, *b.qpos, *b.qvel]
                    for i, b in sorted(replica.bodies.items())]
        assert js["bodies"] == expected, f"tick {frame.tick}"
        entered = set(frame.enter.ids)
        assert js["entered"] == sorted(entered)
        mergers += len(entered & held)
        leaves += len(frame.leave)
        # What the scene takes out: every body that left, and each one that re-entered.
        assert set(js["left"]) == (held if frame.snapshot else set(frame.leave) | (entered & held))
    assert mergers > 0 and leaves > 20, "too few mergers or leaves to prove much"
    if predicted:  # the budget defers some: their dead reckoning runs on in both replicas
        assert replica.predicted and sum(len(pb.Frame.FromString(f).update.changed)
                                         for f in data) > 100
