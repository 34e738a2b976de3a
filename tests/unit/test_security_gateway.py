"""The gateway's security parts without services: token checks, buckets, the audit chain,
and the guard inside a core (a ban ends a running subscription)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
import uuid
from pathlib import Path

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmic.settings import SecuritySettings, Settings
from schemas import models
from schemas.models import Role
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.core import GatewayCore
from streams.gateway.errors import CommandIdInUse, InvalidCommand, status_of
from streams.gateway.guard import Caller, bearer
from streams.gateway.testing import SyntheticWorld, TestAuth
from streams.security import audit, tokens
from streams.security.errors import Forbidden, KeyFileError, RateLimited, Unauthenticated
from streams.security.ratelimit import Buckets, Counter, TokenBucket
from tests.unit.test_gateway_faces import SETTINGS

NOW = 1_800_000_000.0


# Tokens.

@pytest.fixture
def auth() -> TestAuth:
    return TestAuth()


def test_a_minted_token_verifies_to_its_player_and_role(auth: TestAuth):
    identity = auth.verifier.verify(auth.token("ann", Role.OPERATOR))
    assert (identity.player_id, identity.role) == ("ann", Role.OPERATOR)
    hs = auth.verifier.verify(auth.token("bo", algorithm="HS256"))
    assert hs.player_id == "bo" and hs.role is Role.PLAYER


def test_hs256_is_refused_unless_the_development_switch_is_on(auth: TestAuth):
    token = auth.token("bo", algorithm="HS256")
    strict = tokens.Verifier(SecuritySettings(), auth.keys)
    with pytest.raises(Unauthenticated, match="unknown key id 'dev-hs256'"):
        strict.verify(token)


@pytest.mark.parametrize("offset,ok", [(-9.0, True), (9.0, True), (11.0, False), (-11.0, False)])
def test_clock_skew_is_bounded(auth: TestAuth, offset: float, ok: bool):
    """A token issued ``offset`` seconds from the verifier's clock; skew is 10 s."""
    if offset > 0:  # issued in the future
        token = auth.token("c", now=NOW + offset)
    else:  # expired |offset| seconds ago
        token = auth.token("c", now=NOW - 300 + offset)
    if ok:
        assert auth.verifier.verify(token, now=NOW).player_id == "c"
    else:
        with pytest.raises(Unauthenticated):
            auth.verifier.verify(token, now=NOW)


def test_a_token_may_not_outlive_the_configured_lifetime(auth: TestAuth):
    with pytest.raises(Unauthenticated, match="at most 300s"):
        auth.verifier.verify(auth.token("d", ttl_s=301))
    assert auth.verifier.verify(auth.token("d", ttl_s=300)).player_id == "d"


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk", "x5c", "crit"])
def test_headers_that_choose_a_key_are_refused(auth: TestAuth, header: str):
    token = jwt.encode({"sub": "e"}, auth.keys.signing, algorithm="EdDSA",  # type: ignore[arg-type]
                       headers={"kid": auth.keys.signing_kid, header: "x"})
    with pytest.raises(Unauthenticated, match=header):
        auth.verifier.verify(token)


def test_bans_and_revocations_apply_until_they_end(auth: TestAuth):
    token = auth.token("f", jti="t-1")
    auth.denylist.ban("f", until=time.time() + 60)
    with pytest.raises(Unauthenticated, match="banned"):
        auth.verifier.verify(token)
    auth.denylist.ban("f", until=time.time() - 1)  # over
    assert auth.verifier.verify(token).player_id == "f"
    auth.denylist.revoke("t-1")
    with pytest.raises(Unauthenticated, match="revoked"):
        auth.verifier.verify(token)
    auth.denylist.lift("token", "t-1")
    assert auth.verifier.verify(token).token_id == "t-1"


def test_the_stack_keys_are_made_once_and_private(tmp_path: Path):
    s = Settings(state_dir=tmp_path)
    keys = tokens.TokenKeys.for_settings(s)
    again = tokens.TokenKeys.for_settings(s)
    assert again.signing_kid == keys.signing_kid
    private = tokens.signing_key_file(s)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens.jwks_file(s).stat().st_mode) == 0o600
    jwks = json.loads(tokens.jwks_file(s).read_text())
    assert [k["kid"] for k in jwks["keys"]] == [keys.signing_kid]
    assert "d" not in jwks["keys"][0]  # the public set holds no private part
    token = tokens.mint(keys, s.security, "g")
    public_only = tokens.Verifier(s.security, tokens.TokenKeys(
        None, "", tokens.load_jwks(tokens.jwks_file(s))))
    assert public_only.verify(token).player_id == "g"
    os.chmod(private, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        tokens.TokenKeys.for_settings(s)


@pytest.mark.parametrize("value,token", [("Bearer abc", "abc"), ("bearer  abc ", "abc"),
                                         ("Basic abc", None), ("Bearer", None), ("", None)])
def test_bearer_values(value: str, token: str | None):
    assert bearer(value) == token


# Buckets.

@settings(max_examples=60, deadline=None)
@given(rate=st.floats(1, 100), burst=st.integers(1, 80),
       gaps=st.lists(st.floats(0, 0.2), min_size=1, max_size=400))
def test_a_bucket_never_admits_more_than_rate_times_t_plus_burst(rate: float, burst: int,
                                                                 gaps: list[float]):
    bucket = TokenBucket(rate, burst, 0.0)
    t = 0.0
    admitted = 0
    for gap in gaps:
        t += gap
        wait = bucket.take(t)
        if wait == 0:
            admitted += 1
        else:
            assert wait > 0 and bucket.take(t + wait + 1e-9) == 0  # the wait is enough
            admitted += 1
            t += wait + 1e-9
    assert admitted <= rate * t + burst + 1e-6


def test_buckets_refuse_with_the_wait_and_refill():
    clock = [0.0]
    b = Buckets(20, 40, clock=lambda: clock[0])
    for _ in range(40):
        b.take("p")
    with pytest.raises(RateLimited) as err:
        b.take("p")
    assert err.value.retry_after_s == pytest.approx(0.05)
    b.take("q")  # another player is not affected
    clock[0] = 0.05
    b.take("p")


def test_a_counter_holds_a_ceiling():
    c = Counter(2, "subscriptions")
    c.acquire("x")
    c.acquire("x")
    with pytest.raises(RateLimited):
        c.acquire("x")
    c.release("x")
    c.acquire("x")
    assert c.count("x") == 2


# The audit chain.

def _chain(n: int) -> list[dict]:
    out: list[dict] = []
    chain = audit.AuditChain("gw-1", lambda _g, r: out.append(r))
    for i in range(n):
        chain.record(action="submit", face="grpc", outcome=audit.OUTCOMES[i % 6],
                     player_id=f"p{i}", reason="" if i % 2 else "why")
    return out


def test_an_untouched_chain_verifies():
    chains, problems = audit.verify(_chain(20))
    assert problems == [] and chains["gw-1"].records == 20


def test_a_record_carries_every_field_in_hash_order_and_the_hash_of_them():
    """What the chain writes field by field is what :func:`audit.record_hash` rebuilds
    from the record, with every field set, long reasons cut and no command id spelled
    out as the zero id."""
    out: list[dict] = []
    chain = audit.AuditChain("gw-1", lambda _g, r: out.append(r))
    cid = uuid.uuid4()
    chain.record(action="submit", face="ws", outcome="ADMITTED", peer="1.2.3.4:5",
                 player_id="alice", role="player", token_id="t1", world_id="w",
                 command_id=cid, command_type="RemoveBody", command_offset=9)
    chain.record(action="subscribe", face="rest", outcome="DENIED", reason="x" * 900)
    first, second = out
    assert list(first) == [*audit.HASHED, "hash"] == list(second)
    assert first["command_id"] == str(cid) and second["command_id"] == audit.NO_COMMAND
    assert len(second["reason"]) == 500 and second["player_id"] is None
    assert [r["hash"] for r in out] == [audit.record_hash(r) for r in out]
    assert second["prev_hash"] == first["hash"] and (first["seq"], second["seq"]) == (0, 1)
    with pytest.raises(ValueError, match="unknown audit outcome"):
        chain.record(action="submit", face="ws", outcome="MAYBE")
    with pytest.raises(ValueError, match="unknown audit fields"):
        chain.record(action="submit", face="ws", outcome="DENIED", owner="eve")
    assert chain.seq == 2  # a refused record takes no sequence number


@pytest.mark.parametrize("tamper,seq", [
    (lambda rs: rs.__setitem__(7, {**rs[7], "reason": "edited"}), 7),
    (lambda rs: rs.pop(4), 4),
    (lambda rs: rs.insert(2, rs.pop(6)), 2),
    (lambda rs: rs.pop(0), 0),
    (lambda rs: rs.append(dict(rs[3])), 20),
])
def test_a_tampered_chain_names_the_first_bad_sequence(tamper, seq: int):
    records = _chain(20)
    tamper(records)
    _, problems = audit.verify(records)
    assert [p.seq for p in problems] == [seq]


# The guard inside a core.

class Core:
    def __init__(self, **security: object) -> None:
        self.auth = TestAuth(**security)
        self.appended: list[models.PlayerCommand] = []
        self.core = GatewayCore(SETTINGS, self._append, self.auth.guard)
        self.world = SyntheticWorld(3, n=20)
        self.core.publish(self.world.step())

    async def _append(self, command: models.PlayerCommand, avro: bytes | None
                      ) -> tuple[int, int]:
        self.appended.append(command)
        return 0, len(self.appended) - 1

    def caller(self, player: str = "alice", role: Role = Role.PLAYER) -> Caller:
        return Caller("grpc", self.auth.token(player, role), "peer", "conn")

    def submit(self, caller: Caller, command: dict, **fields: str) -> pb.SubmitCommandReply:
        request = pb.SubmitCommandRequest(world_id=fields.pop("world", "w"),
                                          command_json=json.dumps(command), **fields)
        return asyncio.run(self.core.submit(request, caller))


def test_each_refusal_is_its_own_kind_and_one_audit_record():
    c = Core()
    alice = c.caller()
    cases = [
        (Caller("grpc", None), {"type": "RemoveBody", "body_id": 1}, {}, Unauthenticated),
        (alice, {"type": "RemoveBody", "body_id": 1}, {"player_id": "bob"}, Forbidden),
        (alice, {"type": "RetireWorld", "reason": "x"}, {}, Forbidden),
        (alice, {"type": "RemoveBody", "body_id": 1, "owner": "alice"}, {}, InvalidCommand),
    ]
    for caller, command, fields, kind in cases:
        with pytest.raises(kind):
            c.submit(caller, command, **fields)
    cid = str(uuid.uuid4())
    first = c.submit(alice, {"type": "RemoveBody", "body_id": 1}, command_id=cid)
    retry = c.submit(alice, {"type": "RemoveBody", "body_id": 1}, command_id=cid)
    assert retry.offset == first.offset  # a retry is answered, never appended twice
    with pytest.raises(CommandIdInUse):  # another player replaying the id
        c.submit(c.caller("mallory"), {"type": "RemoveBody", "body_id": 1}, command_id=cid)
    assert [r["outcome"] for r in c.auth.records] == [
        "UNAUTHENTICATED", "DENIED", "DENIED", "REJECTED", "ADMITTED", "ADMITTED", "REJECTED"]
    assert len(c.appended) == 1 and c.appended[0].player_id == "alice"
    assert status_of(CommandIdInUse("x")).http == 409
    assert audit.verify(c.auth.records)[1] == []


def test_new_worlds_are_a_quota_but_known_ones_are_not():
    c = Core(world_creation_burst=2)
    alice = c.caller()
    for world in ("n1", "n2"):
        c.submit(alice, {"type": "RemoveBody", "body_id": 1}, world=world)
    with pytest.raises(RateLimited, match="new worlds"):
        c.submit(alice, {"type": "RemoveBody", "body_id": 1}, world="n3")
    c.submit(alice, {"type": "RemoveBody", "body_id": 1}, world="n1")  # commanded already
    c.submit(alice, {"type": "RemoveBody", "body_id": 1}, world="w")  # read from the log
    c.submit(c.caller("sre", Role.OPERATOR), {"type": "RemoveBody", "body_id": 1}, world="n9")


def test_subscriptions_per_connection_are_limited_and_released():
    c = Core(subscriptions_per_connection=2)
    alice = c.caller()
    request = pb.SubscribeRequest(world_id="w", view=pb.View(center=pb.Vec3(), radius=5))
    subs = [c.core.subscribe(request, alice) for _ in range(2)]
    with pytest.raises(RateLimited):
        c.core.subscribe(request, alice)
    subs[0].close()
    subs[0].close()  # idempotent
    c.core.subscribe(request, alice)


def test_a_ban_ends_a_running_subscription():
    c = Core()
    alice = c.caller()

    async def run() -> None:
        request = pb.SubscribeRequest(world_id="w", view=pb.View(center=pb.Vec3(), radius=50))
        frames = c.core.subscribe(request, alice).frames()
        await anext(frames)
        c.auth.denylist.ban("alice")
        c.core.publish(c.world.step())
        with pytest.raises(Unauthenticated, match="banned"):
            await anext(frames)

    asyncio.run(run())


def test_anonymous_watching_only_where_the_setting_allows():
    c = Core()
    request = pb.SubscribeRequest(world_id="w", view=pb.View(center=pb.Vec3(), radius=5))
    with pytest.raises(Unauthenticated):
        c.core.subscribe(request, Caller("ws", None, "peer", "conn"))
    open_core = Core(anonymous_watch=True)
    open_core.core.subscribe(request, Caller("ws", None, "peer", "conn"))
    with pytest.raises(Unauthenticated):  # watching, never commanding
        open_core.submit(Caller("ws", None), {"type": "RemoveBody", "body_id": 1})


def test_records_of_the_first_hash_format_still_verify():
    records = _chain(6)
    prev = audit.GENESIS
    for r in records:  # rewrite the chain as the first format hashed it
        r["prev_hash"] = prev
        r["hash"] = audit.legacy_record_hash(r)
        prev = r["hash"]
    assert audit.verify(records)[1] == []
    records[2] = {**records[2], "outcome": "ADMITTED"}  # it was DENIED
    assert [p.seq for p in audit.verify(records)[1]] == [2]
