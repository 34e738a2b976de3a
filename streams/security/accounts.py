"""Player accounts: register, log in, refresh and log out through the gateway.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's
low-memory profile) and rehashed on login when those parameters change.
A login returns a short-lived access token (:func:`.tokens.mint`, EdDSA) and
an opaque refresh token. Refresh tokens rotate: each use marks the token used
and returns the next of its *family*; presenting a used one again means a copy
leaked, and the whole family is revoked (the thief's and the player's next
refresh both fail, and the player logs in again). Logging out revokes the
family. Only SHA-256 digests of refresh tokens are stored.

Tables: ``accounts`` and ``refresh_tokens``, created by ``cosmic db migrate``
(``infra/sql/timescale/005_accounts.sql``). Hashing runs in a worker thread,
so the gateway's loop never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cosmic.errors import CosmicError
from cosmic.settings import Settings
from schemas.models import Role

from .errors import Unauthenticated
from .tokens import TokenKeys, mint

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
MIN_PASSWORD, MAX_PASSWORD = 10, 1024


class AccountError(CosmicError):
    """An account request the store refuses for what it asks (not for who asks)."""


class InvalidAccount(AccountError):
    """A username or password that does not meet the rules."""


class AccountExists(AccountError):
    """The username is taken."""


class AccountsUnavailable(CosmicError):
    """The account store (PostgreSQL) cannot be reached or is not migrated."""


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    player_id: str
    role: Role

    def to_json(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "token_type": "Bearer", "expires_in": self.expires_in,
                "player_id": self.player_id, "role": self.role.value}


def _digest(refresh_token: str) -> bytes:
    return hashlib.sha256(refresh_token.encode()).digest()


class AccountStore:
    def __init__(self, settings: Settings, keys: TokenKeys,
                 hasher: PasswordHasher | None = None) -> None:
        self.settings = settings
        self.keys = keys
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None  # verified against for unknown users: equal timing

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(self.settings.postgres.dsn,
                                                         connect_timeout=5)
        except psycopg.Error as exc:
            raise AccountsUnavailable(
                f"accounts store at {self.settings.postgres.dsn_redacted}: {exc}") from None

    async def _run(self, fn: Any, *args: Any) -> Any:
        conn = await self._connect()
        try:
            async with conn.transaction():
                return await fn(conn, *args)
        except psycopg.errors.UndefinedTable:
            raise AccountsUnavailable("the accounts tables are missing: run cosmic db migrate"
                                      ) from None
        except psycopg.OperationalError as exc:
            raise AccountsUnavailable(f"accounts store: {exc}") from None
        finally:
            await conn.close()

    # Register.

    async def register(self, username: str, password: str) -> str:
        """A new player account; its player id."""
        _check(username, password)
        digest = await asyncio.to_thread(self.hasher.hash, password)
        player_id = f"p-{uuid.uuid4().hex[:16]}"

        async def insert(conn: psycopg.AsyncConnection[Any]) -> None:
            try:
                await conn.execute("INSERT INTO accounts (player_id, username, password_hash) "
                                   "VALUES (%s, %s, %s)", (player_id, username, digest))
            except psycopg.errors.UniqueViolation:
                raise AccountExists(f"the username {username!r} is taken") from None

        await self._run(insert)
        return player_id

    # Log in.

    async def login(self, username: str, password: str) -> TokenPair:
        row = await self._run(_account, username)
        if row is None or row[3] is not None:
            await asyncio.to_thread(self._burn, password)
            raise Unauthenticated("unknown username or wrong password")
        player_id, stored, role, _ = row
        try:
            await asyncio.to_thread(self.hasher.verify, stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            raise Unauthenticated("unknown username or wrong password") from None
        if self.hasher.check_needs_rehash(stored):
            fresh = await asyncio.to_thread(self.hasher.hash, password)
            await self._run(_set_hash, player_id, fresh)
        return await self._run(self._issue, player_id, Role(role), uuid.uuid4())

    def _burn(self, password: str) -> None:
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_hex(16))
        with contextlib.suppress(VerificationError):
            self.hasher.verify(self._dummy, password)

    async def _issue(self, conn: psycopg.AsyncConnection[Any], player_id: str, role: Role,
                     family: uuid.UUID) -> TokenPair:
        refresh = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.security.refresh_token_ttl_s)
        await conn.execute("INSERT INTO refresh_tokens (token_hash, family_id, player_id, "
                           "expires_at) VALUES (%s, %s, %s, %s)",
                           (_digest(refresh), family, player_id, expires))
        ttl = self.settings.security.token_lifetime_s
        access = mint(self.keys, self.settings.security, player_id, role, ttl_s=ttl,
                      extra={"fam": family.hex})
        return TokenPair(access, refresh, ttl, player_id, role)

    # Refresh and log out.

    async def refresh(self, refresh_token: str) -> TokenPair:
        """The next pair of the token's family; reuse of a used token revokes the family."""
        outcome: TokenPair | str = await self._run(self._rotate, refresh_token)
        if isinstance(outcome, str):
            raise Unauthenticated(outcome)
        return outcome

    async def _rotate(self, conn: psycopg.AsyncConnection[Any], refresh_token: str
                      ) -> TokenPair | str:
        cur = await conn.execute(
            "SELECT r.family_id, r.player_id, r.expires_at, r.used_at, r.revoked_at, a.role, "
            "a.disabled_at FROM refresh_tokens r JOIN accounts a USING (player_id) "
            "WHERE r.token_hash = %s FOR UPDATE OF r", (_digest(refresh_token),))
        row = await cur.fetchone()
        if row is None:
            return "unknown refresh token"
        family, player_id, expires, used, revoked, role, disabled = row
        if revoked is not None:
            return "the refresh token was revoked (logged out, or a copy was reused)"
        if used is not None:
            await conn.execute("UPDATE refresh_tokens SET revoked_at = now() "
                               "WHERE family_id = %s AND revoked_at IS NULL", (family,))
            return "the refresh token was already used: every token of this login is revoked"
        if expires <= datetime.now(UTC) or disabled is not None:
            return "the refresh token expired" if disabled is None else "the account is disabled"
        await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = %s",
                           (_digest(refresh_token),))
        return await self._issue(conn, player_id, Role(role), family)

    async def logout(self, refresh_token: str) -> None:
        async def revoke(conn: psycopg.AsyncConnection[Any]) -> int:
            cur = await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND "
                "family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = %s)",
                (_digest(refresh_token),))
            return cur.rowcount

        if not await self._run(revoke):
            raise Unauthenticated("unknown or already revoked refresh token")


async def _account(conn: psycopg.AsyncConnection[Any], username: str) -> Any:
    cur = await conn.execute("SELECT player_id, password_hash, role, disabled_at FROM accounts "
                             "WHERE username = %s", (username,))
    return await cur.fetchone()


async def _set_hash(conn: psycopg.AsyncConnection[Any], player_id: str, digest: str) -> None:
    await conn.execute("UPDATE accounts SET password_hash = %s WHERE player_id = %s",
                       (digest, player_id))


def _check(username: str, password: str) -> None:
    if not isinstance(username, str) or not USERNAME.match(username):
        raise InvalidAccount("a username is 3..64 letters, digits, '_', '.' or '-'")
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidAccount(f"a password has {MIN_PASSWORD}..{MAX_PASSWORD} characters")
    if password.lower() == username.lower():
        raise InvalidAccount("the password may not be the username")
