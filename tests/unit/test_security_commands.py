"""Who may do what to a world: command signatures, ownership, retries, replay agreement."""

from __future__ import annotations

import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cosmic.settings import Settings
from schemas import models
from schemas.models import RejectReason, Role
from streams.security import policy, signing
from streams.security.errors import Forbidden, KeyFileError, Unauthenticated
from streams.worlds.commands import advance
from streams.worlds.events import snapshot_record, state_from_snapshot
from streams.worlds.state import RECENT_COMMANDS, RecentCommands, WorldState

NOW = datetime(2026, 12, 2, tzinfo=UTC)
RING = signing.KeyRing.generate()


def _cmd(body: models.Command, player: str = "alice", world: str = "w",
         command_id: uuid.UUID | None = None) -> models.PlayerCommand:
    return models.PlayerCommand(command_id=command_id or uuid.uuid4(), player_id=player,
                                world_id=world, client_ts=NOW, received_ts=NOW, command=body)


def _spawn(body_id: int, x: float = 1.0) -> models.SpawnBody:
    return models.SpawnBody(body_id=body_id, kind=models.BodyKind.ASTEROID, mass=1e-12,
                            radius=1e-6, position=models.Vec3(x=x, y=0, z=0),
                            velocity=models.Vec3(x=0, y=6.28, z=0))


def _nudge(body_id: int) -> models.ApplyImpulse:
    return models.ApplyImpulse(body_id=body_id, dv=models.Vec3(x=0.01, y=0, z=0))


def _signed(body: models.Command, player: str = "alice", role: Role = Role.PLAYER,
            **kw: object) -> models.PlayerCommand:
    return signing.sign(_cmd(body, player, **kw), role, RING)  # type: ignore[arg-type]


def authenticate(command: models.PlayerCommand) -> Role:
    return signing.verify(command, RING)


def _run(state: WorldState, *commands: models.PlayerCommand) -> list[tuple[RejectReason, str]]:
    start = (state.last_command_offset or 0) + 1
    out = advance(state, list(enumerate(commands, start)), authenticate=authenticate)
    return [(r.reason, r.message) for r in out.rejections]


def _opened() -> WorldState:
    """A world an operator opened (so the platform owns it), with a star of its own."""
    state = WorldState.empty("w", 0)
    opening = _signed(_spawn(1, x=0.0), "ops", Role.OPERATOR, command_id=uuid.UUID(int=1))
    assert _run(state, opening) == []
    return state


# Signatures.

def test_a_signed_command_verifies_with_its_role_and_any_change_breaks_it():
    cmd = _signed(_nudge(5), "alice", Role.OPERATOR)
    assert signing.verify(cmd, RING) is Role.OPERATOR
    changed = {
        "player": cmd.model_copy(update={"player_id": "mallory"}),
        "world": cmd.model_copy(update={"world_id": "other"}),
        "id": cmd.model_copy(update={"command_id": uuid.uuid4()}),
        "body": cmd.model_copy(update={"command": _nudge(6)}),
        "role": cmd.model_copy(update={"admission": cmd.admission.model_copy(  # type: ignore[union-attr]
            update={"role": Role.PLAYER})}),
    }
    for forged in changed.values():
        with pytest.raises(Unauthenticated, match="does not match"):
            signing.verify(forged, RING)


def test_unsigned_unknown_key_and_wrong_key_are_unauthenticated():
    with pytest.raises(Unauthenticated, match="no signature"):
        signing.verify(_cmd(_nudge(1)), RING)
    other = signing.KeyRing.generate()
    with pytest.raises(Unauthenticated, match="unknown key"):
        signing.verify(signing.sign(_cmd(_nudge(1)), Role.PLAYER, other), RING)
    same_id = signing.KeyRing({RING.signing_id: b"x" * 32}, RING.signing_id)
    with pytest.raises(Unauthenticated, match="does not match"):
        signing.verify(signing.sign(_cmd(_nudge(1)), Role.PLAYER, same_id), RING)


def test_a_rotated_ring_still_verifies_old_signatures_until_the_key_is_removed():
    old = _signed(_nudge(1))
    rotated = RING.rotate()
    new = signing.sign(_cmd(_nudge(1)), Role.PLAYER, rotated)
    assert new.admission is not None and new.admission.key_id != RING.signing_id
    assert signing.verify(old, rotated) is Role.PLAYER
    assert signing.verify(new, rotated) is Role.PLAYER
    with pytest.raises(Unauthenticated):
        signing.verify(old, rotated.without(RING.signing_id))
    with pytest.raises(KeyFileError):
        rotated.without(rotated.signing_id)


def test_the_key_file_is_created_once_private_and_refused_when_others_can_read_it(tmp_path: Path):
    settings = Settings(state_dir=tmp_path)
    ring = signing.KeyRing.for_settings(settings)
    path = signing.keys_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing.KeyRing.for_settings(settings) == ring
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        signing.KeyRing.for_settings(settings)


def test_forged_key_ids_cost_no_key_file_reads_and_a_rotation_is_still_seen(tmp_path: Path):
    settings = Settings(state_dir=tmp_path)
    check = signing.Authenticator(settings)
    ring = check.ring
    forged = signing.KeyRing({"f0f0f0f0": b"y" * 32}, "f0f0f0f0")
    for i in range(50):  # a flood of made-up key ids: each refused, the file read once
        with pytest.raises(Unauthenticated, match="unknown key"):
            check(signing.sign(_cmd(_nudge(i)), Role.PLAYER,
                               signing.KeyRing({f"kid{i}": b"y" * 32}, f"kid{i}")))
    with pytest.raises(Unauthenticated):
        check(signing.sign(_cmd(_nudge(1)), Role.PLAYER, forged))
    assert check.reads == 1
    rotated = ring.rotate()
    rotated.save(signing.keys_file(settings))
    assert check(signing.sign(_cmd(_nudge(1)), Role.PLAYER, rotated)) is Role.PLAYER
    assert check.reads == 2
    with pytest.raises(Unauthenticated):  # the new file is known now: no read for a forgery
        check(signing.sign(_cmd(_nudge(2)), Role.PLAYER, forged))
    assert check.reads == 2


def test_a_worker_sees_a_rotation_without_restarting(tmp_path: Path):
    settings = Settings(state_dir=tmp_path)
    check = signing.authenticator(settings)
    ring = signing.KeyRing.for_settings(settings)
    rotated = ring.rotate()
    rotated.save(signing.keys_file(settings))
    assert check(signing.sign(_cmd(_nudge(1)), Role.PLAYER, rotated)) is Role.PLAYER
    assert signing.authenticator(Settings(state_dir=tmp_path, security={
        "require_signed_commands": False}))(_cmd(_nudge(1))) is Role.OPERATOR


# The policy, on its own.

@pytest.mark.parametrize("body", [
    models.SetWorldParams(G=1.0, softening=0.0, tick_rate_hz=30, dt=0.01, merge_on_contact=False,
                          snapshot_every=10),
    models.AdoptSnapshot(snapshot_partition=0, snapshot_offset=0, state_hash="00",
                         source_world_id="w", source_tick=0, reason="r"),
    models.RetireWorld(reason="r"),
])
def test_operator_actions_are_refused_to_players_whoever_owns_the_world(body: models.Command):
    with pytest.raises(Forbidden, match="operator action"):
        policy.check(Role.PLAYER, "alice", body, body_owner=None, world_owner="alice")
    policy.check(Role.OPERATOR, "ops", body, body_owner=None, world_owner="alice")


def test_body_commands_go_to_the_body_owner_or_the_world_owner():
    policy.check(Role.PLAYER, "alice", _nudge(1), body_owner="alice", world_owner="")
    policy.check(Role.PLAYER, "wendy", _nudge(1), body_owner="alice", world_owner="wendy")
    with pytest.raises(Forbidden, match="belongs to player 'alice'"):
        policy.check(Role.PLAYER, "bob", _nudge(1), body_owner="alice", world_owner="")
    with pytest.raises(Forbidden, match="belongs to the world"):
        policy.check(Role.PLAYER, "bob", _nudge(1), body_owner=None, world_owner="")


# In a world.

def test_unsigned_and_forged_commands_are_rejected_and_change_nothing():
    state = _opened()
    before = state.state_hash()
    forged = _signed(_spawn(7)).model_copy(update={"player_id": "mallory"})
    got = _run(state, _cmd(_spawn(8)), forged)
    assert [r for r, _ in got] == [RejectReason.UNAUTHENTICATED] * 2
    assert 7 not in state.world and 8 not in state.world
    # Only the tick moved on: the same world stepped without the commands hashes alike.
    reference = _opened()
    _run(reference)
    assert state.state_hash() == reference.state_hash() != before


def test_a_player_owns_what_they_spawn_and_only_they_may_command_it():
    state = _opened()
    assert _run(state, _signed(_spawn(7), "alice")) == []
    assert state.owners == {7: "alice"} and state.world_owner == ""
    got = _run(state, _signed(_nudge(7), "bob"), _signed(models.RemoveBody(body_id=7), "bob"),
               _signed(_nudge(1), "alice"), _signed(_nudge(7), "alice"))
    assert [r for r, _ in got] == [RejectReason.NOT_PERMITTED] * 3
    assert "belongs to the world" in got[2][1]
    assert _run(state, _signed(_nudge(99), "bob")) == [
        (RejectReason.UNKNOWN_BODY, "no body with id 99")]  # unknown, whoever asks


def test_a_transfer_hands_a_body_over_and_is_part_of_the_hash():
    state = _opened()
    _run(state, _signed(_spawn(7), "alice"))
    before = state.state_hash()
    assert _run(state, _signed(models.TransferBody(body_id=7, new_owner="bob"), "alice")) == []
    assert state.owners[7] == "bob"
    assert [r for r, _ in _run(state, _signed(_nudge(7), "alice"))] == [RejectReason.NOT_PERMITTED]
    assert _run(state, _signed(_nudge(7), "bob")) == []
    assert before != state.state_hash()


def test_ownership_changes_the_hash_even_when_the_bodies_are_identical():
    a, b = _opened(), _opened()
    cid = uuid.uuid4()
    _run(a, _signed(_spawn(7), "alice", command_id=cid))
    _run(b, _signed(_spawn(7), "bob", command_id=cid))
    assert a.world.state_hash() == b.world.state_hash()
    assert a.state_hash() != b.state_hash()


def test_the_first_player_to_act_in_a_new_world_owns_it():
    state = WorldState.empty("w", 0)
    _run(state, _signed(_spawn(1, x=0.0), "wendy"), _signed(_spawn(2), "alice"))
    assert state.world_owner == "wendy"
    assert _run(state, _signed(_nudge(2), "wendy")) == []  # the world owner's right
    assert [r for r, _ in _run(state, _signed(_nudge(1), "alice"))] == [RejectReason.NOT_PERMITTED]


def test_a_retried_command_id_is_applied_once():
    state = _opened()
    cid = uuid.uuid4()
    got = _run(state, _signed(_spawn(7), command_id=cid), _signed(_spawn(7), command_id=cid))
    assert [r for r, _ in got] == [RejectReason.DUPLICATE_COMMAND]
    # A rejected command is not remembered: fixing and retrying it under its id works.
    bad = uuid.uuid4()
    assert [r for r, _ in _run(state, _signed(_nudge(99), command_id=bad))] == [
        RejectReason.UNKNOWN_BODY]
    assert _run(state, _signed(_spawn(99), command_id=bad)) == []


def test_recent_command_ids_are_bounded_and_oldest_go_first():
    recent = RecentCommands()
    ids = [uuid.uuid4() for _ in range(RECENT_COMMANDS + 2)]
    for i in ids:
        recent.add(i)
    assert len(recent) == RECENT_COMMANDS
    assert ids[0] not in recent and ids[1] not in recent and ids[-1] in recent
    assert recent.ids() == ids[2:]


def test_a_snapshot_keeps_owners_world_owner_and_recent_ids():
    state = _opened()
    cid = uuid.uuid4()
    _run(state, _signed(_spawn(7), "alice", command_id=cid), _signed(_spawn(8), "bob"))
    restored = state_from_snapshot(snapshot_record(state, 0), 0)
    assert restored.state_hash() == state.state_hash()
    assert (restored.owners, restored.world_owner) == ({7: "alice", 8: "bob"}, "")
    assert [r for r, _ in _run(restored, _signed(_spawn(9), command_id=cid))] == [
        RejectReason.DUPLICATE_COMMAND]


def test_a_removed_body_loses_its_owner_and_its_id_can_be_spawned_by_another():
    state = _opened()
    _run(state, _signed(_spawn(7), "alice"))
    assert _run(state, _signed(models.RemoveBody(body_id=7), "alice")) == []
    assert 7 not in state.owners
    assert _run(state, _signed(_spawn(7), "bob")) == []
    assert state.owners[7] == "bob"


def test_the_signed_message_is_the_records_exact_avro_encoding():
    """The compiled encoder the signature uses writes what fastavro writes: a signature
    made before (or by any Avro writer) verifies after."""
    import io

    from fastavro import schemaless_writer

    from schemas import catalog

    for body in (_nudge(5), _spawn(7), models.TransferBody(body_id=7, new_owner="bob"),
                 models.RetireWorld(reason="ünïcode ✓")):
        record = {**_cmd(body).to_avro(), "admission": None}
        out = io.BytesIO()
        schemaless_writer(out, catalog.parsed("PlayerCommand"), record)
        expected = signing.TAG + b"k1\x00player\x00" + out.getvalue()
        assert signing._message("k1", "player", signing._prefix(record)) == expected


def test_the_gateway_encodes_a_command_once_and_the_bytes_are_fastavros_signed_record():
    """The encoding made for the signature, with the admission appended, is the record the
    log writes: exactly what fastavro writes for the signed command, which a reader of the
    topic verifies; one bit changed anywhere before the signature and it does not (unless
    the change reads back as the very same command)."""
    import io

    from fastavro import schemaless_writer

    from schemas import catalog
    from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
    from schemas.testing import LocalRegistry
    from streams.gateway.log import command_value

    registry = LocalRegistry()
    encode, decode = AvroSerializer(registry, "PlayerCommand"), AvroDeserializer(registry)
    ctx = SerializationContext("cosmic.commands.v1")

    def read(value: bytes) -> models.PlayerCommand:
        return models.PlayerCommand.from_avro(decode(value, ctx))

    for body in (_nudge(5), _spawn(7), models.TransferBody(body_id=7, new_owner="bob"),
                 models.RetireWorld(reason="ünïcode ✓")):
        signed, avro = signing.admit(_cmd(body), Role.PLAYER, RING)
        assert avro is not None
        out = io.BytesIO()
        schemaless_writer(out, catalog.parsed("PlayerCommand"), signed.to_avro())
        assert avro == out.getvalue()
        value = command_value(encode, ctx, signed, avro)
        assert value == encode(signed.to_avro(), ctx)  # what the log wrote before
        assert read(value) == signed and signing.verify(read(value), RING) is Role.PLAYER
        head = len(value) - len(avro)
        for i in range(head, len(value) - 32):  # every bit of every byte before the MAC
            for bit in range(8):
                flipped = value[:i] + bytes([value[i] ^ (1 << bit)]) + value[i + 1:]
                try:
                    tampered = read(flipped)
                except Exception:  # noqa: BLE001 - no longer a PlayerCommand: refused too
                    continue
                if tampered == signed:
                    continue  # the same command (a UUID's hex digit read in upper case)
                with pytest.raises(Unauthenticated):
                    signing.verify(tampered, RING)


def test_a_record_producer_and_the_gateway_sign_alike():
    command = _cmd(_nudge(3))
    record = signing.sign_record(command.to_avro(), Role.OPERATOR, RING)
    signed, _ = signing.admit(command, Role.OPERATOR, RING)
    assert record["admission"]["signature"] == signed.admission.signature  # type: ignore[union-attr]


def test_the_signature_is_plain_hmac_sha256_of_the_message_for_each_key_and_role():
    """The MAC made from a key's prepared HMAC is the textbook one over the message, for
    every role and after a rotation (a new ring signs with its new key, not a stale one)."""
    import hashlib
    import hmac

    rotated = RING.rotate()
    for ring in (RING, rotated, RING):
        for role in (Role.PLAYER, Role.OPERATOR):
            command = _cmd(_nudge(5))
            signed, _ = signing.admit(command, role, ring)
            admission = signed.admission
            assert admission is not None and admission.key_id == ring.signing_id
            message = signing._message(ring.signing_id, role.value,
                                       signing._prefix(command.to_avro()))
            key = ring.keys[ring.signing_id]
            assert admission.signature == hmac.digest(key, message, hashlib.sha256)
            assert signing.verify(signed, ring) is role
    signed, _ = signing.admit(_cmd(_nudge(5)), Role.PLAYER, rotated)
    with pytest.raises(Unauthenticated, match="unknown key"):
        signing.verify(signed, RING)  # the old ring never had the new key
    old = signing.sign(_cmd(_nudge(6)), Role.PLAYER, RING)
    assert signing.verify(old, rotated) is Role.PLAYER
    with pytest.raises(Unauthenticated, match="unknown key"):  # a removed (leaked) key
        signing.verify(old, rotated.without(RING.signing_id))


def test_a_command_admitted_is_what_model_copy_would_make():
    command = _cmd(models.TransferBody(body_id=7, new_owner="bob"))
    admission = models.Admission(key_id="k1", role=Role.PLAYER, signature=b"\x01" * 32)
    fast, slow = command.admitted(admission), command.model_copy(update={"admission": admission})
    assert fast == slow and hash(fast) == hash(slow)
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump() == slow.model_dump() and fast.to_avro() == slow.to_avro()
    assert command.admission is None  # the original is untouched
    with pytest.raises(Exception):  # noqa: B017 - still frozen: pydantic's ValidationError
        fast.player_id = "mallory"  # type: ignore[misc]
