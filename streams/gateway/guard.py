"""Who may come in: every face's requests pass the :class:`Guard` before the core acts.

A face hands the core a :class:`Caller` (its name, the bearer token it found,
the peer's address); the guard verifies the token (:mod:`streams.security.tokens`),
keeps the rate limits (:mod:`streams.security.ratelimit`), applies the role
policy (:func:`streams.security.policy.check_role`), signs what it admits (:func:`streams.security.signing.admit`) and writes
one audit record (:mod:`streams.security.audit`) per attempt, whatever its
outcome. The sender's identity is the token's: a request's own ``player_id``
is only ever compared with it. A command id is taken once (the core's
:class:`~.outcomes.Outcomes`: a retry of the same command is answered with the
first append, another command under that id is refused), and the physics
worker refuses a command id it has applied (DUPLICATE_COMMAND).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cosmic.errors import CosmicError
from cosmic.settings import SecuritySettings
from schemas import models
from streams.security import policy, signing
from streams.security.audit import AuditChain
from streams.security.errors import Forbidden, RateLimited, SecurityError, Unauthenticated
from streams.security.ratelimit import Buckets, Clock, Counter
from streams.security.tokens import Identity, Verifier

from .errors import BadRequest, Unavailable

# A role's name by a dict lookup: an enum's ``.value`` costs a descriptor call, per record.
_ROLE_NAMES = {role: role.value for role in models.Role}
TOKEN_CACHE = 50_000  # verified tokens remembered (their expiry and bans rechecked on use)


@dataclass(frozen=True, slots=True)
class Caller:
    """What a face knows about who is asking."""

    face: str  # grpc | ws | rest
    token: str | None
    peer: str = ""
    connection: str = ""  # one per socket / gRPC peer: per-connection limits count here


def bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (None: absent or another scheme)."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def outcome_of(exc: BaseException) -> str:
    if isinstance(exc, Unauthenticated):
        return "UNAUTHENTICATED"
    if isinstance(exc, RateLimited):
        return "RATE_LIMITED"
    if isinstance(exc, SecurityError):
        return "DENIED"
    if isinstance(exc, BadRequest | CosmicError) and not isinstance(exc, Unavailable):
        return "REJECTED"
    return "FAILED"


class Guard:
    def __init__(self, security: SecuritySettings, verifier: Verifier,
                 ring: signing.KeyRing, audit: AuditChain, *,
                 clock: Clock = time.monotonic) -> None:
        self.security = security
        self.verifier = verifier
        self.ring = ring
        self.audit = audit
        self.commands = Buckets(security.commands_per_s, security.command_burst,
                                what="commands", clock=clock)
        self.world_creations = Buckets(security.world_creations_per_hour / 3600.0,
                                       security.world_creation_burst,
                                       what="new worlds", clock=clock)
        self.per_connection = Counter(security.subscriptions_per_connection,
                                      "subscriptions on this connection")
        self.per_player = Counter(security.subscriptions_per_player, "subscriptions")
        self._tokens: OrderedDict[str, Identity] = OrderedDict()
        # Told (face, action, outcome) of every decision recorded (the gateway's metrics).
        self.on_decision: Callable[[str, str, str], None] | None = None

    # Identities.

    def authenticate(self, caller: Caller) -> Identity:
        """The caller's verified identity, or :class:`Unauthenticated`."""
        token = caller.token
        cached = self._tokens.get(token) if token else None
        if cached is not None:
            if cached.expires_at <= time.time() - self.security.clock_skew_s:
                self._tokens.pop(token, None)  # type: ignore[arg-type]
                raise Unauthenticated("token refused: Signature has expired")
            self.verifier.denylist.check(cached.player_id, cached.token_id)
            return cached
        identity = self.verifier.verify(token)
        assert token is not None
        self._tokens[token] = identity
        while len(self._tokens) > TOKEN_CACHE:
            self._tokens.popitem(last=False)
        return identity

    def watcher(self, caller: Caller) -> Identity | None:
        """Who watches: a verified identity, or None where anonymous watching is allowed."""
        if caller.token is None and self.security.anonymous_watch:
            return None
        return self.authenticate(caller)

    def still_valid(self, identity: Identity | None) -> None:
        """Raise if ``identity``'s player was banned or token revoked since it came in."""
        if identity is not None:
            self.verifier.denylist.check(identity.player_id, identity.token_id)

    # Commands.

    def check_sender(self, identity: Identity, claimed_player: str) -> None:
        if claimed_player and claimed_player != identity.player_id:
            raise Forbidden(f"player_id {claimed_player[:64]!r} is not the token's player "
                            f"{identity.player_id!r}: the sender is who the token says")
        self.commands.take(identity.player_id)

    def admit(self, identity: Identity, command: models.PlayerCommand,
              new_world: bool) -> signing.Signed:
        """The signed command to append (and its record's encoding), or the refusal."""
        policy.check_role(identity.role, command.command)
        if new_world and identity.role is not models.Role.OPERATOR:
            self.world_creations.take(identity.player_id)
        return signing.admit(command, identity.role, self.ring)

    # Subscriptions.

    def open_subscription(self, caller: Caller, identity: Identity | None) -> None:
        player = identity.player_id if identity is not None else f"anonymous@{caller.peer}"
        self.per_connection.acquire(caller.connection or caller.peer)
        try:
            self.per_player.acquire(player)
        except RateLimited:
            self.per_connection.release(caller.connection or caller.peer)
            raise

    def close_subscription(self, caller: Caller, identity: Identity | None) -> None:
        player = identity.player_id if identity is not None else f"anonymous@{caller.peer}"
        self.per_connection.release(caller.connection or caller.peer)
        self.per_player.release(player)

    # Audit.

    def record(self, caller: Caller, action: str, outcome: str, identity: Identity | None,
               reason: str = "", *, world_id: str | None = None, command_id: Any = None,
               command_type: str | None = None, command_offset: int | None = None) -> None:
        if self.on_decision is not None:
            self.on_decision(caller.face, action, outcome)
        if identity is None:
            player_id = role = token_id = None
        else:
            player_id, role = identity.player_id, _ROLE_NAMES[identity.role]
            token_id = identity.token_id or None
        self.audit.append(action, caller.face, outcome, player_id, role, token_id, world_id,
                          command_id, command_type, caller.peer, reason, command_offset)
