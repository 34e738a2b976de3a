"""Accounts through a running gateway: register, log in, command with the access token,
refresh (rotating), reuse of a spent refresh token revoking the login, log out, and the
refusals a client sees. PostgreSQL is the stack's, migrated as `cosmic db migrate` does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from connectors import timescale
from cosmic.settings import Settings
from cosmic.stack import Stack
from streams.gateway import build_gateway
from streams.gateway.service import GatewayService

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RUN = uuid.uuid4().hex[:8]
SPAWN = {"body_id": 7, "kind": "ASTEROID", "mass": 1.0, "radius": 0.1,
         "position": {"x": 1, "y": 0, "z": 0}, "velocity": {"x": 0, "y": 0, "z": 0}}


@pytest.fixture(scope="module")
def gateway(settings: Settings, stack: Stack) -> Iterator[GatewayService]:
    timescale.migrate(settings)
    gw = build_gateway(settings.model_copy(update={"gateway": settings.gateway.model_copy(
        update={"grpc_port": 0, "http_port": 0})}))
    gw.start()
    try:
        assert gw.wait_ready(90), gw.failure()
        yield gw
    finally:
        gw.stop()


def post(gw: GatewayService, path: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{gw.http_url}api/v1/auth/{path}", json=body, timeout=30,
                      **kwargs)  # type: ignore[arg-type]


def test_an_account_lives_through_register_login_refresh_and_logout(
        gateway: GatewayService, settings: Settings):
    user, password = f"ada-{RUN}", "correct horse battery"
    created = post(gateway, "register", {"username": user, "password": password})
    assert created.status_code == 201, created.text
    player_id = created.json()["player_id"]
    again = post(gateway, "register", {"username": user, "password": "another password"})
    assert again.status_code == 409

    with psycopg.connect(settings.postgres.dsn) as conn:
        stored = conn.execute("SELECT password_hash FROM accounts WHERE username = %s",
                              (user,)).fetchone()
    assert stored is not None and stored[0].startswith("$argon2id$")
    assert password not in stored[0]

    assert post(gateway, "login", {"username": user, "password": "wrong password!"}
                ).status_code == 401
    assert post(gateway, "login", {"username": f"nobody-{RUN}", "password": password}
                ).status_code == 401
    login = post(gateway, "login", {"username": user, "password": password})
    assert login.status_code == 200, login.text
    pair = login.json()
    assert pair["player_id"] == player_id and pair["token_type"] == "Bearer"
    assert pair["expires_in"] <= settings.security.token_lifetime_s

    # The access token commands as the account's player.
    spawned = httpx.post(f"{gateway.http_url}api/v1/worlds/acct-{RUN}:w/bodies", json=SPAWN,
                         headers={"Authorization": f"Bearer {pair['access_token']}"}, timeout=30)
    assert spawned.status_code == 202, spawned.text

    # Refresh rotates; the spent token presented again revokes the whole login.
    first = pair["refresh_token"]
    rotated = post(gateway, "refresh", {"refresh_token": first})
    assert rotated.status_code == 200 and rotated.json()["refresh_token"] != first
    second = rotated.json()["refresh_token"]
    reuse = post(gateway, "refresh", {"refresh_token": first})
    assert reuse.status_code == 401 and "already used" in reuse.json()["detail"]
    revoked = post(gateway, "refresh", {"refresh_token": second})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]

    # A new login, logged out: its refresh token no longer works.
    pair = post(gateway, "login", {"username": user, "password": password}).json()
    assert post(gateway, "logout", {"refresh_token": pair["refresh_token"]}).status_code == 204
    assert post(gateway, "refresh", {"refresh_token": pair["refresh_token"]}).status_code == 401
    assert post(gateway, "logout", {"refresh_token": "made-up"}).status_code == 401


@pytest.mark.parametrize("body,code", [
    ({"username": "ab", "password": "long enough password"}, 422),
    ({"username": "has space", "password": "long enough password"}, 422),
    ({"username": "fine-name", "password": "short"}, 422),
    ({"username": "samesame12", "password": "samesame12"}, 422),
    ({"username": "fine-name", "password": "long enough password", "role": "operator"}, 400),
    ({"username": "fine-name"}, 400),
    ("not an object", 400),
])
def test_registration_refuses_bad_accounts_and_extra_fields(gateway: GatewayService,
                                                            body: object, code: int):
    resp = post(gateway, "register", body)
    assert resp.status_code == code, resp.text
    assert resp.headers["content-type"] == "application/problem+json"


def test_password_guessing_is_rate_limited(gateway: GatewayService):
    user = f"target-{RUN}"
    assert post(gateway, "register", {"username": user, "password": "the real password"}
                ).status_code == 201
    codes = [post(gateway, "login", {"username": user, "password": f"guess number {i}"}
                  ).status_code for i in range(7)]
    assert codes[:4] == [401] * 4 and codes[-1] == 429
