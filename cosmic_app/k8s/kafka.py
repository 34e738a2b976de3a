"""Strimzi resources: the KRaft cluster, its node pools, every topic and every user.

Topics come from :mod:`cosmic.topics`, one ``KafkaTopic`` each, so the cluster the
Topic Operator keeps is the registry. Users come from the ACL table (the identities
of the security model) handed in as data: anything shaped like
:class:`Identity` works, so the table's module is imported in one place only
(:mod:`cosmic_app.cli.k8s`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from cosmic import topics
from cosmic.errors import ConfigError
from cosmic.settings import Settings
from cosmic_app.k8s.values import NodePool, Values

Manifest = dict[str, Any]
STRIMZI = "kafka.strimzi.io/v1"
# The identity with every right: Strimzi makes it a super user, with no ACLs.
SUPER_USER = "admin"
CLIENT_PORT = 9092

# The ACL table's words as Strimzi spells them.
_RESOURCE = {"topic": "topic", "group": "group", "transactional_id": "transactionalId",
             "cluster": "cluster"}
_OPERATION = {"READ": "Read", "WRITE": "Write", "DESCRIBE": "Describe", "CREATE": "Create",
              "DELETE": "Delete", "ALTER": "Alter", "IDEMPOTENT_WRITE": "IdempotentWrite",
              "DESCRIBE_CONFIGS": "DescribeConfigs", "ALTER_CONFIGS": "AlterConfigs"}


class Grant(Protocol):
    @property
    def resource(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def operations(self) -> Sequence[str]: ...
    @property
    def prefixed(self) -> bool: ...


class Identity(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def doc(self) -> str: ...
    @property
    def grants(self) -> Sequence[Grant]: ...


def bootstrap(values: Values) -> str:
    """The client address of the cluster, as Strimzi names its bootstrap Service."""
    return f"{values.kafka.name}-kafka-bootstrap.{values.namespace}.svc:{CLIENT_PORT}"


def _labels(values: Values) -> dict[str, str]:
    return {"strimzi.io/cluster": values.kafka.name}


def _pool(values: Values, name: str, role: str, pool: NodePool) -> Manifest:
    storage: dict[str, Any] = {"type": "persistent-claim", "size": pool.storage,
                               "deleteClaim": False}
    if values.kafka.storage_class:
        storage["class"] = values.kafka.storage_class
    return {
        "apiVersion": STRIMZI, "kind": "KafkaNodePool",
        "metadata": {"name": name, "namespace": values.namespace, "labels": _labels(values)},
        "spec": {"replicas": pool.replicas, "roles": [role],
                 # JBOD with one volume: the KRaft metadata log lives beside the data.
                 "storage": {"type": "jbod", "volumes": [
                     {"id": 0, **storage, "kraftMetadata": "shared"}]},
                 "resources": pool.resources.spec()},
    }


def cluster(settings: Settings, values: Values, secured: bool) -> list[Manifest]:
    """The ``Kafka`` resource and its two node pools (controllers apart from brokers,
    so a broker's roll never takes a quorum member with it)."""
    k = values.kafka
    if k.min_insync_replicas > k.replication:
        raise ConfigError(f"kafka.min_insync_replicas ({k.min_insync_replicas}) exceeds "
                          f"kafka.replication ({k.replication}): no write could succeed")
    if k.brokers.replicas < k.replication:
        raise ConfigError(f"kafka.replication ({k.replication}) needs at least as many "
                          f"brokers ({k.brokers.replicas})")
    listener: dict[str, Any] = {"name": "plain", "port": CLIENT_PORT, "type": "internal",
                                "tls": False}
    kafka_spec: dict[str, Any] = {
        "version": settings.kafka.version,
        "listeners": [listener],
        "config": {
            "default.replication.factor": k.replication,
            "min.insync.replicas": k.min_insync_replicas,
            "offsets.topic.replication.factor": k.replication,
            "transaction.state.log.replication.factor": k.replication,
            "transaction.state.log.min.isr": k.min_insync_replicas,
            # Topics exist because the registry says so, never because a client asked.
            "auto.create.topics.enable": False,
        },
    }
    if secured:
        listener["authentication"] = {"type": "scram-sha-512"}
        kafka_spec["authorization"] = {"type": "simple", "superUsers": [SUPER_USER]}
    return [
        {"apiVersion": STRIMZI, "kind": "Kafka",
         "metadata": {"name": k.name, "namespace": values.namespace},
         "spec": {"kafka": kafka_spec,
                  "entityOperator": {"topicOperator": {}, "userOperator": {}}}},
        _pool(values, "controllers", "controller", k.controllers),
        _pool(values, "brokers", "broker", k.brokers),
    ]


def resource_name(topic_name: str) -> str:
    """A Kubernetes name for a topic: dots are legal, but lower case only."""
    return topic_name.lower().replace("_", "-")


def kafka_topics(values: Values, declared: Iterable[topics.Topic] = topics.ALL) -> list[Manifest]:
    out = []
    for t in declared:
        # The registry's None means "the cluster's factor": here, the values' replication.
        replicas = t.replication or values.kafka.replication
        configs: dict[str, Any] = dict(t.configs())
        configs["min.insync.replicas"] = min(values.kafka.min_insync_replicas, replicas)
        out.append({
            "apiVersion": STRIMZI, "kind": "KafkaTopic",
            "metadata": {"name": resource_name(t.name), "namespace": values.namespace,
                         "labels": _labels(values),
                         "annotations": {"cosmic.garden/doc": t.doc}},
            "spec": {"topicName": t.name, "partitions": t.partitions, "replicas": replicas,
                     "config": configs},
        })
    return out


def _acl(grant: Grant) -> dict[str, Any]:
    try:
        kind = _RESOURCE[grant.resource]
        ops = [_OPERATION[op] for op in grant.operations]
    except KeyError as exc:
        raise ConfigError(f"ACL grant on {grant.resource} {grant.name!r}: "
                          f"no Strimzi name for {exc.args[0]!r}") from None
    return {"type": "allow", "operations": ops,
            "resource": {"type": kind, "name": grant.name,
                         "patternType": "prefix" if grant.prefixed else "literal"}}


def users(values: Values, identities: Iterable[Identity]) -> list[Manifest]:
    """One SCRAM ``KafkaUser`` per identity that may do something: the super user,
    and every identity with grants. An identity with none (a player) gets no
    credentials at all: nothing could use them."""
    out = []
    for ident in identities:
        if not ident.grants and ident.name != SUPER_USER:
            continue
        spec: dict[str, Any] = {"authentication": {"type": "scram-sha-512"}}
        if ident.grants:
            spec["authorization"] = {"type": "simple",
                                     "acls": [_acl(g) for g in ident.grants]}
        out.append({
            "apiVersion": STRIMZI, "kind": "KafkaUser",
            "metadata": {"name": ident.name, "namespace": values.namespace,
                         "labels": _labels(values),
                         "annotations": {"cosmic.garden/doc": ident.doc}},
            "spec": spec,
        })
    return out
