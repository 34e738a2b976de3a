"""The platform's own processes on Kubernetes: workers, gateways, Faust apps, connectors.

Every container reads its settings the one way the platform reads them, as
``COSMIC_*`` variables: the shared ones from a ConfigMap rendered from the
settings, passwords from Secrets by reference (never a literal), and its Kafka
identity by name. Each service is a consumer group, so each scales on its lag
(a KEDA ``ScaledObject`` with the kafka scaler) and keeps at most one member out
during a voluntary disruption (a PodDisruptionBudget).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, SecretStr

from cosmic import topics
from cosmic.settings import Settings
from cosmic_app.k8s.kafka import Manifest, bootstrap
from cosmic_app.k8s.values import Scaled, Values

SETTINGS_CONFIGMAP = "cosmic-settings"
SERVICE_ACCOUNT = "cosmic"
METRICS_PORT = 9464  # every process's /metrics: fixed here, a free port on a laptop
STATE_DIR = "/var/lib/cosmic"
LAKE_DIR = "/var/lib/cosmic-lake"
LAKE_CLAIM = "cosmic-lake"
SECRETS_DIR = "/etc/cosmic"
KEDA = "keda.sh/v1alpha1"


@dataclass(frozen=True)
class Service:
    """One deployable: how it starts, which consumer group it is, who it is to Kafka."""

    name: str
    args: tuple[str, ...]
    group: str  # consumer group whose lag scales it ("": scaled on CPU)
    identity: str  # its Kafka user in the ACL table
    size: Scaled
    lag_topic: str = ""  # "": the lag of every topic the group reads
    lake: bool = False  # mounts the archive lake
    command_keys: bool = False  # signs or verifies commands
    token_keys: bool = False  # verifies players' tokens


def _env_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def carried(settings: Settings) -> dict[str, str]:
    """Every setting the renderer's settings changed from the defaults, as the variable
    that sets it: what the deployer put in ``cosmic.toml`` or the environment when
    rendering reaches the pods. Secrets never (they come from Secrets), and no path
    (a path on the rendering machine means nothing in a pod)."""
    out: dict[str, str] = {}

    def walk(prefix: str, model: BaseModel, default: BaseModel | None) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            base = (getattr(default, name) if default is not None
                    else field.get_default(call_default_factory=True))
            key = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                walk(f"{key}__", value, base)
            elif (value != base and value is not None
                  and not isinstance(value, SecretStr | PurePath)):
                out[key] = _env_text(value)

    walk("COSMIC_", settings, None)
    return out


def settings_env(settings: Settings, values: Values, secured: bool) -> dict[str, str]:
    """The settings of every pod: those :func:`carried` from the renderer's, then what
    a cluster changes (addresses, the cluster's size, file locations), which wins."""
    s = settings
    env = carried(settings)
    env |= {
        "COSMIC_KAFKA__BOOTSTRAP_SERVERS": bootstrap(values),
        "COSMIC_KAFKA__REPLICATION_FACTOR": str(values.kafka.replication),
        "COSMIC_KAFKA__DEFAULT_PARTITIONS": str(s.kafka.default_partitions),
        "COSMIC_REGISTRY__URL": values.registry_url,
        "COSMIC_POSTGRES__HOST": values.postgres.host,
        "COSMIC_POSTGRES__PORT": "5432",
        "COSMIC_POSTGRES__USER": s.postgres.user,
        "COSMIC_POSTGRES__DATABASE": s.postgres.database,
        "COSMIC_POSTGRES__TIMESCALE": s.postgres.timescale,
        "COSMIC_CLICKHOUSE__HOST": values.clickhouse_store.host,
        "COSMIC_CLICKHOUSE__PORT": "9000",
        "COSMIC_CLICKHOUSE__HTTP_PORT": "8123",
        "COSMIC_CLICKHOUSE__USER": s.clickhouse.user,
        "COSMIC_CLICKHOUSE__DATABASE": s.clickhouse.database,
        "COSMIC_STATE_DIR": STATE_DIR,
        "COSMIC_LAKE_DIR": LAKE_DIR,
        # Prometheus finds pods by their port annotation, not by file_sd targets.
        "COSMIC_METRICS__HOST": "0.0.0.0",
        "COSMIC_METRICS__PORT": str(METRICS_PORT),
        "COSMIC_METRICS__PUBLISH": "false",
        "COSMIC_GATEWAY__HOST": "0.0.0.0",
        "COSMIC_SECURITY__COMMAND_KEYS_FILE": f"{SECRETS_DIR}/command-keys/command-keys.json",
        "COSMIC_SECURITY__TOKEN_SIGNING_KEY_FILE": f"{SECRETS_DIR}/token-keys/token-signing.pem",
        "COSMIC_SECURITY__TOKEN_JWKS_FILE": f"{SECRETS_DIR}/token-keys/token-jwks.json",
        "COSMIC_LOG__FORMAT": "json",
        "COSMIC_LOG__LEVEL": s.log.level,
    }
    if secured:
        env["COSMIC_KAFKA__SECURITY_PROTOCOL"] = "SASL_PLAINTEXT"
        env["COSMIC_KAFKA__SASL_MECHANISM"] = "SCRAM-SHA-512"
    elif "security_protocol" in type(s.kafka).model_fields:
        # An open listener; the secured settings' default protocol is SASL, so say so
        # (settings without the field have only the open one).
        env["COSMIC_KAFKA__SECURITY_PROTOCOL"] = "PLAINTEXT"
    return env


def services(settings: Settings, values: Values) -> tuple[Service, ...]:
    lv, ph = settings.living, settings.physics
    return (
        Service("physics", ("physics", "worker"), ph.group_id, "physics", values.physics,
                lag_topic=topics.COMMANDS.name, command_keys=True),
        Service("gateway", ("gateway", "run"), "", "gateway", values.gateway,
                command_keys=True, token_keys=True),
        Service("ecosystem", (), lv.ecosystem_app_id, "living", values.ecosystem),
        Service("civilization", (), lv.civilization_app_id, "living", values.civilization),
        # Group ids as connectors.<sink>.build names them (a unit test keeps them equal).
        *(Service(f"connector-{sink}",
                  ("connectors", "run", sink, "--instance-id", "$(POD_NAME)"),
                  f"cosmic-connector-{sink}", "connectors", size, lake=sink == "archive")
          for sink, size in (("timescale", values.timescale),
                             ("clickhouse", values.clickhouse),
                             ("archive", values.archive))),
    )


def _command(svc: Service) -> list[str]:
    # The Faust apps are modules with a main(); everything else is a `cosmic` command.
    if svc.name in ("ecosystem", "civilization"):
        return ["python", "-m", f"streams.{svc.name}"]
    return ["cosmic", *svc.args]


def _meta(values: Values, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": values.namespace,
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "cosmic"},
            **extra}


def container_env(values: Values, identity: str | None) -> list[dict[str, Any]]:
    """The variables no ConfigMap may hold: the pod's own name, and every password."""
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "COSMIC_POSTGRES__PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": values.postgres.secret, "key": values.postgres.secret_key}}},
        {"name": "COSMIC_CLICKHOUSE__PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": values.clickhouse_store.secret, "key": values.clickhouse_store.secret_key}}},
    ]
    if identity:
        # Strimzi's User Operator writes each KafkaUser's password into a Secret of
        # the same name; the pod reads it from there and never sees another's.
        env += [{"name": "COSMIC_KAFKA__IDENTITY", "value": identity},
                {"name": "COSMIC_KAFKA__SASL_PASSWORD", "valueFrom": {"secretKeyRef": {
                    "name": identity, "key": "password"}}}]
    return env


def pod_spec(settings: Settings, values: Values, svc: Service, secured: bool) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [{"name": "state", "mountPath": STATE_DIR}]
    volumes: list[dict[str, Any]] = [{"name": "state", "emptyDir": {}}]
    for wanted, name, secret in ((svc.command_keys, "command-keys", values.command_keys_secret),
                                 (svc.token_keys, "token-keys", values.token_keys_secret)):
        if wanted:
            mounts.append({"name": name, "mountPath": f"{SECRETS_DIR}/{name}", "readOnly": True})
            volumes.append({"name": name, "secret": {"secretName": secret, "defaultMode": 0o400}})
    if svc.lake:
        mounts.append({"name": "lake", "mountPath": LAKE_DIR})
        volumes.append({"name": "lake", "persistentVolumeClaim": {"claimName": LAKE_CLAIM}})
    ports = [{"name": "metrics", "containerPort": METRICS_PORT}]
    metrics_probe = {"httpGet": {"path": "/metrics", "port": "metrics"}}
    readiness: dict[str, Any] = dict(metrics_probe)
    if svc.name == "gateway":
        gw = settings.gateway
        ports += [{"name": "http", "containerPort": gw.http_port},
                  {"name": "grpc", "containerPort": gw.grpc_port}]
        # The HTTP face answers only once the gateway's core runs.
        readiness = {"httpGet": {"path": "/openapi.json", "port": "http"}}
    container = {
        "name": svc.name, "image": values.image, "imagePullPolicy": values.image_pull_policy,
        "command": _command(svc),
        "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIGMAP}}],
        "env": container_env(values, svc.identity if secured else None),
        "ports": ports,
        "resources": svc.size.resources.spec(),
        # Generous: a worker recovering its worlds by verified replay serves /metrics
        # throughout, but a cold JIT start takes a while on a small node.
        "startupProbe": {**metrics_probe, "periodSeconds": 5, "failureThreshold": 60},
        "livenessProbe": {**metrics_probe, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {**readiness, "periodSeconds": 5, "failureThreshold": 2},
        "volumeMounts": mounts,
    }
    return {
        "serviceAccountName": SERVICE_ACCOUNT,
        # Time to finish the transaction in flight and leave the group, so the next
        # owner of the worlds starts from committed offsets at once.
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": volumes,
    }


def _template(settings: Settings, values: Values, svc: Service, secured: bool) -> dict[str, Any]:
    return {"metadata": {"labels": {"app.kubernetes.io/name": svc.name},
                         "annotations": {"prometheus.io/scrape": "true",
                                         "prometheus.io/port": str(METRICS_PORT)}},
            "spec": pod_spec(settings, values, svc, secured)}


def workload(settings: Settings, values: Values, svc: Service, secured: bool) -> Manifest:
    """The StatefulSet or Deployment of ``svc``. It names no replica count: its
    ScaledObject owns that (from ``minReplicaCount`` up), and a count here would be
    set back by every ``kubectl apply`` or GitOps sync, fighting the autoscaler."""
    selector = {"matchLabels": {"app.kubernetes.io/name": svc.name}}
    if svc.name == "physics":
        # Pod names physics-0, physics-1, ... are the worker ids: a replaced pod comes
        # back with its predecessor's id, so its transactional id fences the old one
        # and its static group membership takes the old one's partitions back at once.
        pod = _template(settings, values, svc, secured)
        pod["spec"]["containers"][0]["env"].append(
            {"name": "COSMIC_PHYSICS__WORKER_ID", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.name"}}})
        return {"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": _meta(values, svc.name),
                "spec": {"serviceName": svc.name,
                         # Start and stop in parallel: ordering buys nothing, fencing
                         # is per id, and a rebalance of many joins is one rebalance.
                         "podManagementPolicy": "Parallel",
                         "updateStrategy": {"type": "RollingUpdate"},
                         "selector": selector, "template": pod}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(values, svc.name),
            "spec": {"selector": selector,
                     # Add the new pod before taking an old one away: the group never
                     # shrinks below its size during a roll.
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": _template(settings, values, svc, secured)}}


def disruption_budget(values: Values, svc: Service) -> Manifest:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(values, svc.name),
            # One member out at a time: one rebalance, one handover, never a stampede.
            "spec": {"maxUnavailable": 1,
                     "selector": {"matchLabels": {"app.kubernetes.io/name": svc.name}}}}


def scaled_object(values: Values, svc: Service, secured: bool, cpu_target: int) -> Manifest:
    kind = "StatefulSet" if svc.name == "physics" else "Deployment"
    trigger: dict[str, Any]
    if svc.group:
        meta = {"bootstrapServers": bootstrap(values), "consumerGroup": svc.group,
                "lagThreshold": str(svc.size.lag_threshold),
                # A member beyond the partition count would sit idle: never add it.
                "allowIdleConsumers": "false",
                # A group with no committed offset yet has no lag to act on.
                "offsetResetPolicy": "latest"}
        if svc.lag_topic:
            meta["topic"] = svc.lag_topic
        trigger = {"type": "kafka", "metadata": meta}
        if secured:
            meta.update(sasl="scram_sha512", tls="disable")
            trigger["authenticationRef"] = {"name": f"kafka-lag-{svc.name}"}
    else:
        trigger = {"type": "cpu", "metricType": "Utilization",
                   "metadata": {"value": str(cpu_target)}}
    return {"apiVersion": KEDA, "kind": "ScaledObject", "metadata": _meta(values, svc.name),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind,
                                        "name": svc.name},
                     "minReplicaCount": svc.size.replicas,
                     "maxReplicaCount": max(svc.size.max_replicas, svc.size.replicas),
                     "pollingInterval": 15,
                     # Slow to shrink: every removal is a handover.
                     "cooldownPeriod": 300,
                     "triggers": [trigger]}}


def lag_auth(values: Values, svc: Service) -> Manifest:
    """The credentials KEDA's kafka scaler reads the group's offsets with: the
    service's own identity, which may describe its group and the topics it reads,
    so the scaler needs no identity of its own."""
    return {"apiVersion": KEDA, "kind": "TriggerAuthentication",
            "metadata": _meta(values, f"kafka-lag-{svc.name}"),
            "spec": {"env": [{"parameter": "username", "name": "COSMIC_KAFKA__IDENTITY",
                              "containerName": svc.name}],
                     "secretTargetRef": [{"parameter": "password", "name": svc.identity,
                                          "key": "password"}]}}
