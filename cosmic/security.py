"""Bring a cluster's SCRAM users and ACLs in line with :mod:`cosmic.acls`.

Called by the local stack once its broker answers, and by ``cosmic topics
create`` (as the admin identity) against any cluster. Both steps are
idempotent: a user that has a credential keeps it, an ACL that exists is
left, and an ACL of one of our identities that the table no longer grants is
deleted, so the broker never allows more than the table says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from cosmic import acls, kafka
from cosmic.errors import StackError
from cosmic.settings import Settings

_TIMEOUT_S = 30.0
# Kafka's default and minimum for SCRAM-SHA-512 is 4096.
SCRAM_ITERATIONS = 8192

_RESOURCE = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactional_id": ResourceType.TRANSACTIONAL_ID}

Key = tuple[object, str, object, str, object]


def principal(identity: str) -> str:
    return f"User:{identity}"


def desired_bindings(settings: Settings) -> list[AclBinding]:
    """Every ALLOW binding the table grants (the admin, a super user, needs none)."""
    out = []
    for ident in acls.identities(settings):
        for grant in ident.grants:
            pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
            for op in grant.operations:
                out.append(AclBinding(_RESOURCE[grant.resource], grant.name, pattern,
                                      principal(ident.name), "*", AclOperation[op],
                                      AclPermissionType.ALLOW))
    return out


def _key(b: AclBinding) -> Key:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.operation)


def _result(future: Any, what: str) -> Any:
    try:
        return future.result(timeout=_TIMEOUT_S)
    except KafkaException as exc:
        raise StackError(f"could not {what}: {exc.args[0].str()}") from None


def reconcile_acls(settings: Settings) -> list[str]:
    """Create the missing ACLs and delete our identities' extra ones; report each change."""
    client = kafka.admin(settings)
    ours = {principal(i.name) for i in acls.identities(settings)}
    wanted = {_key(b): b for b in desired_bindings(settings)}
    # None matches any name, principal and host (the library's stubs say str only).
    anything: Any = None
    everything = AclBindingFilter(ResourceType.ANY, anything, ResourcePatternType.ANY, anything,
                                  anything, AclOperation.ANY, AclPermissionType.ANY)
    present = {_key(b): b for b in _result(client.describe_acls(everything), "list ACLs")
               if b.principal in ours}
    report = []
    missing = [b for k, b in wanted.items() if k not in present]
    if missing:
        for fut in client.create_acls(missing, request_timeout=_TIMEOUT_S).values():
            _result(fut, "create ACLs")
        report.append(f"created {len(missing)} ACLs")
    extra = [b for k, b in present.items() if k not in wanted
             or b.permission_type != AclPermissionType.ALLOW or b.host != "*"]
    if extra:
        filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal,
                                    b.host, b.operation, b.permission_type) for b in extra]
        for fut in client.delete_acls(filters, request_timeout=_TIMEOUT_S).values():
            _result(fut, "delete ACLs")
        report.append(f"deleted {len(extra)} ACLs the table no longer grants")
    return report or [f"all {len(wanted)} ACLs up to date"]


def ensure_scram_users(settings: Settings, password_of: Callable[[str], str],
                       users: Iterable[str] | None = None) -> list[str]:
    """Give each identity without a SCRAM credential for our mechanism the password
    ``password_of(name)``; identities that have one keep it."""
    mech = ScramMechanism[settings.kafka.sasl_mechanism.replace("-", "_")]
    names = list(users if users is not None else (i.name for i in acls.identities(settings)))
    client = kafka.admin(settings)
    have: set[str] = set()
    described = client.describe_user_scram_credentials(names)
    assert isinstance(described, dict)  # a list of users: one future per user
    for name, fut in described.items():
        try:
            desc = fut.result(timeout=_TIMEOUT_S)
        except KafkaException:
            continue  # RESOURCE_NOT_FOUND: this user has no credential yet
        if any(c.mechanism == mech for c in desc.scram_credential_infos):
            have.add(name)
    todo = [n for n in names if n not in have]
    if not todo:
        return []
    upserts: list[UserScramCredentialAlteration] = [UserScramCredentialUpsertion(n, ScramCredentialInfo(mech, SCRAM_ITERATIONS),
                                            password_of(n).encode()) for n in todo]
    for fut in client.alter_user_scram_credentials(upserts).values():
        _result(fut, "store SCRAM credentials")
    return [f"added SCRAM credentials for {', '.join(todo)}"]
