"""The gateway's protobuf contract: the generated code is that of schemas/gateway.proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streams.gateway._proto import gateway_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: Path):
    """A stale streams/gateway/_proto (the .proto changed, gen-protos not rerun) fails here."""
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(REPO / "schemas"),
                    f"--python_out={tmp_path}", str(REPO / "schemas" / "gateway.proto")],
                   check=True)
    fresh = (tmp_path / "gateway_pb2.py").read_text()
    assert fresh == (REPO / "streams/gateway/_proto/gateway_pb2.py").read_text()


def test_frame_round_trips_and_packs_columns():
    frame = pb.Frame(tick=7, base_tick=6, sim_time=0.5, leave=[3, 9])
    frame.update.id_steps.extend([10, 1, 1])
    frame.update.position_deltas.extend([1, -1, 0] * 3)
    data = frame.SerializeToString()
    back = pb.Frame.FromString(data)
    assert back == frame
    # Packed sint64: 9 small deltas cost one byte each plus a tag and a length.
    assert len(pb.Updates(position_deltas=[1, -1, 0] * 3).SerializeToString()) == 2 + 9


def test_gateway_service_is_declared():
    service = pb.DESCRIPTOR.services_by_name["Gateway"]
    assert [m.name for m in service.methods] == [
        "SubmitCommand", "Subscribe", "MoveView", "GetSnapshot", "ListWorlds", "GetOutcome"]
    assert service.methods_by_name["Subscribe"].server_streaming


def test_the_gateway_is_a_platform_service_with_a_main():
    import streams.gateway as gateway
    from cosmic.runtime import PlatformService
    from cosmic.settings import Settings
    from schemas.testing import LocalRegistry

    service: PlatformService = gateway.build_gateway(Settings(), LocalRegistry())
    assert service.name == "gateway" and service.progress() == "starting"
    assert service.failure() is None
    assert callable(gateway.main)
