"""Who may send which command: deny by default, one table, pure.

The gateway applies :func:`check_role` before it admits a command; the
physics worker applies :func:`check` again on the world's state (which
knows who owns each body), so both refuse the same things for the same
reasons.

- An *operator* may send anything (the SRE tools act as one).
- A *player* may spawn bodies (they become the body's owner) and command
  (nudge, remove, transfer) the bodies they own.
- A world's *owner* (the player whose command was the first the world
  applied) may command every body in it.
- World parameters, snapshot adoption (fork, restore) and retirement are
  operator actions.
- Anything not named here is refused.
"""

from __future__ import annotations

from schemas import models
from schemas.models import Role

from .errors import Forbidden

OPERATOR_ONLY: tuple[type[models.BaseModel], ...] = (
    models.SetWorldParams, models.AdoptSnapshot, models.RetireWorld)
# Commands on one existing body: its owner's, the world owner's, or an operator's.
BODY_COMMANDS: tuple[type[models.BaseModel], ...] = (
    models.ApplyImpulse, models.RemoveBody, models.TransferBody)
# Commands any admitted player may send (the worker checks their arguments).
OPEN_COMMANDS: tuple[type[models.BaseModel], ...] = (
    models.SpawnBody, models.SeedSpecies, models.FoundCivilization)


def check_role(role: Role, command: models.BaseModel) -> None:
    """Refuse what ``role`` may never send, whatever the world's state."""
    if role is Role.OPERATOR:
        return
    if isinstance(command, OPERATOR_ONLY):
        raise Forbidden(f"{type(command).__name__} is an operator action")
    if not isinstance(command, BODY_COMMANDS + OPEN_COMMANDS):
        raise Forbidden(f"{type(command).__name__} is not allowed for a {role.value}")


def check(role: Role, player_id: str, command: models.BaseModel, *,
          body_owner: str | None, world_owner: str | None) -> None:
    """Refuse ``command`` unless ``player_id`` acting as ``role`` may send it.

    ``body_owner`` is the owner of the body a body command names ("" or None:
    nobody's, so the world's); ``world_owner`` the world's owner (None or "":
    the platform's).
    """
    check_role(role, command)
    if role is Role.OPERATOR or not isinstance(command, BODY_COMMANDS):
        return
    if body_owner and body_owner == player_id:
        return
    if world_owner and world_owner == player_id:
        return
    body_id = getattr(command, "body_id", None)
    whose = f"player {body_owner!r}" if body_owner else "the world"
    raise Forbidden(f"body {body_id} belongs to {whose}, not to {player_id!r}")
