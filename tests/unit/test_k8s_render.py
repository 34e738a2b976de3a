"""The Kubernetes deployment as rendered: valid against the vendored schemas, and
saying what the platform needs (every topic, stable worker ids, secrets by reference)."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import SecretStr

from cosmic import topics
from cosmic.errors import ConfigError
from cosmic.settings import Settings
from cosmic_app import k8s
from cosmic_app.cli import build_cli
from cosmic_app.k8s import validate

ROOT = Path(__file__).resolve().parents[2]
VALUES = {name: ROOT / "infra" / "k8s" / f"values-{name}.yaml" for name in ("small", "large")}


@dataclass(frozen=True)
class Grant:
    resource: str
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False


@dataclass(frozen=True)
class Identity:
    name: str
    doc: str
    grants: tuple[Grant, ...] = ()


def _reads(*names: str) -> tuple[Grant, ...]:
    return tuple(Grant("topic", n, ("READ", "DESCRIBE")) for n in names)


# The shape of cosmic/acls.py's table, small: what the renderer must do with any table.
TABLE = (
    Identity("admin", "super user"),
    Identity("gateway", "front door", (Grant("topic", topics.COMMANDS.name, ("WRITE", "DESCRIBE")),
                                       Grant("group", "cosmic-gateway", ("READ", "DESCRIBE"),
                                             prefixed=True))),
    Identity("physics", "worlds", (
        *_reads(topics.COMMANDS.name),
        Grant("transactional_id", "cosmic-physics-", ("WRITE", "DESCRIBE"), True))),
    Identity("living", "faust apps", _reads(topics.PHYSICS_TICKS.name)),
    Identity("connectors", "sinks", _reads(*(t.name for t in topics.ALL))),
    Identity("jobs", "flink and spark", _reads(topics.PHYSICS_TICKS.name)),
    Identity("player", "no rights at all"),
)


def _tables() -> dict[str, Any]:
    """The small table above, and the security model's own once cosmic/acls.py is in
    the tree: every render test that takes a table then runs on both."""
    tables: dict[str, Any] = {"sample": TABLE}
    if importlib.util.find_spec("cosmic.acls") is not None:
        acls = importlib.import_module("cosmic.acls")
        tables["cosmic.acls"] = tuple(acls.identities(Settings()))
    return tables


TABLES = _tables()


def rendered(name: str, identities: Any = ()) -> list[dict[str, Any]]:
    return k8s.render(Settings(), k8s.load_values(VALUES[name]), identities)


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


@pytest.mark.parametrize("values", sorted(VALUES))
@pytest.mark.parametrize("table", ["open", *TABLES])
def test_every_manifest_validates_against_its_schema(values: str, table: str):
    secured = table != "open"
    manifests = rendered(values, TABLES[table] if secured else ())
    for m in manifests:
        assert validate.errors(m) == [], (m["kind"], m["metadata"]["name"])
    kinds = {m["kind"] for m in manifests}
    assert kinds >= {"Kafka", "KafkaNodePool", "KafkaTopic", "StatefulSet", "Deployment",
                     "Service", "PodDisruptionBudget", "ScaledObject", "FlinkDeployment",
                     "ScheduledSparkApplication"}
    assert ("KafkaUser" in kinds) == secured


def test_every_schema_the_renderer_needs_is_vendored():
    kinds = validate.kinds()
    for name in VALUES:
        for m in [m for table in TABLES.values() for m in rendered(name, table)]:
            assert (m["apiVersion"], m["kind"]) in kinds


@pytest.mark.parametrize("path, value", [
    (("spec", "triggers", 0, "metadata", "lagThreshold"), 5),  # not a string
    (("spec", "minReplicaCount"), "two"),
], ids=["trigger-metadata-type", "replica-count-type"])
def test_a_broken_scaled_object_is_refused(path: tuple[Any, ...], value: Any):
    scaled = copy.deepcopy(by_kind(rendered("small"), "ScaledObject")[0])
    node = scaled
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    assert validate.errors(scaled)


@pytest.mark.parametrize("kind, edit", [
    # A misspelt field a live API server would prune without a word.
    ("ScaledObject", lambda m: m["spec"].update(coolDownPeriod=10)),
    ("StatefulSet", lambda m: m["spec"]["template"]["spec"].update(serviceAcount="x")),
    ("KafkaTopic", lambda m: m["spec"].update(partition=3)),
    ("KafkaNodePool", lambda m: m["spec"].update(roles=["zookeeper"])),
    ("FlinkDeployment", lambda m: m["spec"]["job"].update(upgradeMode="hot")),
    ("ScheduledSparkApplication", lambda m: m["spec"]["template"].update(mainApplicatonFile="x")),
    ("Kafka", lambda m: m["metadata"].update(labels={"ok": 1})),  # CR metadata: ObjectMeta
    ("Deployment", lambda m: m["spec"]["template"]["spec"]["containers"][0].update(
        resources={"requests": {"cpu": []}})),
])
def test_schema_errors_are_caught_in_every_kind(kind: str, edit: Any):
    manifest = copy.deepcopy(by_kind(rendered("small"), kind)[0])
    assert validate.errors(manifest) == []
    edit(manifest)
    assert validate.errors(manifest)
    with pytest.raises(k8s.ManifestInvalid, match=kind):
        k8s.check([manifest])


def test_kafka_topics_are_the_topic_registry():
    values = k8s.load_values(VALUES["large"])
    kts = {m["spec"]["topicName"]: m["spec"] for m in by_kind(rendered("large"), "KafkaTopic")}
    assert set(kts) == {t.name for t in topics.ALL}
    for t in topics.ALL:
        spec = kts[t.name]
        assert spec["partitions"] == t.partitions
        assert spec["replicas"] == (t.replication or values.kafka.replication)
        assert {k: v for k, v in spec["config"].items() if k != "min.insync.replicas"} == t.configs()
        assert spec["config"]["min.insync.replicas"] == values.kafka.min_insync_replicas


def test_physics_workers_are_a_stateful_set_whose_pod_names_are_worker_ids():
    manifests = rendered("small")
    (workers,) = [m for m in manifests if m["metadata"]["name"] == "physics"
                  and m["kind"] in ("StatefulSet", "Deployment")]
    assert workers["kind"] == "StatefulSet"
    container = workers["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["COSMIC_PHYSICS__WORKER_ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}}
    # The pods are physics-0, physics-1: the settings' own default id is the first one.
    assert Settings().physics.worker_id == f"{workers['metadata']['name']}-0"
    governing = [m for m in by_kind(manifests, "Service")
                 if m["metadata"]["name"] == workers["spec"]["serviceName"]]
    assert governing and governing[0]["spec"]["clusterIP"] == "None"
    # Scaling follows the command topic's lag in the physics group.
    (scaled,) = [m for m in by_kind(manifests, "ScaledObject")
                 if m["spec"]["scaleTargetRef"]["name"] == "physics"]
    assert scaled["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    # The autoscaler owns the count, from the values' replicas up to their maximum.
    assert "replicas" not in workers["spec"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 3)
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["metadata"]["consumerGroup"] == Settings().physics.group_id
    assert trigger["metadata"]["topic"] == topics.COMMANDS.name


def test_every_service_has_probes_resources_and_a_disruption_budget():
    manifests = rendered("large")
    budgets = {m["metadata"]["name"] for m in by_kind(manifests, "PodDisruptionBudget")}
    for w in by_kind(manifests, "StatefulSet") + by_kind(manifests, "Deployment"):
        (c,) = w["spec"]["template"]["spec"]["containers"]
        assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(c)
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
        assert w["metadata"]["name"] in budgets


@pytest.mark.parametrize("table", sorted(TABLES))
def test_passwords_are_secret_references_never_literals(table: str):
    manifests = rendered("large", TABLES[table])
    for m in manifests:
        if m["kind"] == "ConfigMap":
            assert not [k for k in m["data"] if "PASSWORD" in k]
        assert m["kind"] != "Secret"
    text = k8s.to_yaml(manifests)
    docs = list(yaml.safe_load_all(text))
    envs = [e for d in docs for e in _walk_env(d)]
    secret_envs = [e for e in envs if "PASSWORD" in e["name"]]
    assert secret_envs
    for e in secret_envs:
        assert "value" not in e and "secretKeyRef" in e["valueFrom"], e


def _walk_env(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [e for e in node.get("env", []) if isinstance(e, dict) and "name" in e
                 and ("value" in e or "valueFrom" in e)]
        return found + [e for v in node.values() for e in _walk_env(v)]
    if isinstance(node, list):
        return [e for v in node for e in _walk_env(v)]
    return []


def test_kafka_users_carry_the_acl_table_and_each_service_its_own_identity():
    manifests = rendered("small", TABLE)
    users = {m["metadata"]["name"]: m["spec"] for m in by_kind(manifests, "KafkaUser")}
    # The player identity has no rights, so it gets no credentials; admin is super user.
    assert set(users) == {"admin", "gateway", "physics", "living", "connectors", "jobs"}
    assert "authorization" not in users["admin"]
    (kafka,) = by_kind(manifests, "Kafka")
    assert kafka["spec"]["kafka"]["authorization"]["superUsers"] == ["admin"]
    physics_acls = users["physics"]["authorization"]["acls"]
    assert {"type": "allow", "operations": ["Write", "Describe"],
            "resource": {"type": "transactionalId", "name": "cosmic-physics-",
                         "patternType": "prefix"}} in physics_acls
    (workers,) = by_kind(manifests, "StatefulSet")
    env = {e["name"]: e for e in workers["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["COSMIC_KAFKA__IDENTITY"]["value"] == "physics"
    assert env["COSMIC_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "physics"


def test_a_table_without_a_service_identity_is_refused():
    with pytest.raises(ConfigError, match="no identity jobs"):
        rendered("small", [i for i in TABLE if i.name != "jobs"])


def test_connector_groups_are_the_connectors_own():
    from connectors import archive, clickhouse, timescale

    manifests = rendered("small")
    groups = {m["spec"]["scaleTargetRef"]["name"]: m["spec"]["triggers"][0]["metadata"]
              for m in by_kind(manifests, "ScaledObject")}
    for module, sink in ((timescale, "timescale"), (clickhouse, "clickhouse"),
                         (archive, "archive")):
        default = inspect.signature(module.build).parameters["group_id"].default
        assert groups[f"connector-{sink}"]["consumerGroup"] == default


def test_values_files_refuse_unknown_keys(tmp_path: Path):
    bad = tmp_path / "values.yaml"
    bad.write_text("physics:\n  replica: 2\n")
    with pytest.raises(ConfigError, match=r"physics\.replica"):
        k8s.load_values(bad)


def test_impossible_replication_is_refused(tmp_path: Path):
    bad = tmp_path / "values.yaml"
    bad.write_text("kafka:\n  replication: 3\n  brokers: {replicas: 1}\n")
    with pytest.raises(ConfigError, match="brokers"):
        k8s.render(Settings(), k8s.load_values(bad))


def test_cli_writes_one_file_per_resource(tmp_path: Path):
    out = tmp_path / "k8s"
    (out).mkdir()
    (out / "999-stale-old.yaml").write_text("kind: Stale\n")
    result = CliRunner().invoke(build_cli(), ["k8s", "render", "--values",
                                              str(VALUES["small"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.yaml"))
    docs = [yaml.safe_load(f.read_text()) for f in files]
    # The CLI renders with the security model's table (cosmic/acls.py): its KafkaUsers too.
    from cosmic_app.cli.k8s import acl_table

    expected = rendered("small", acl_table(Settings()))
    assert len(docs) == len(expected) and "Stale" not in {d["kind"] for d in docs}
    assert docs[0]["kind"] == "Namespace"
    printed = CliRunner().invoke(build_cli(), ["k8s", "render", "--values", str(VALUES["small"])])
    assert printed.exit_code == 0
    assert list(yaml.safe_load_all(printed.output)) == docs


def test_the_nightly_warehouse_names_its_day_yesterday():
    from datetime import UTC, datetime, timedelta

    from jobs.spark.warehouse import parse_args

    (spark,) = by_kind(rendered("small"), "ScheduledSparkApplication")
    before = (datetime.now(UTC) - timedelta(days=1)).date()
    args = parse_args(spark["spec"]["template"]["arguments"])
    # Either side of a midnight that passes during the test.
    assert args.date in {before, (datetime.now(UTC) - timedelta(days=1)).date()}


def test_the_pods_settings_are_settings_the_platform_accepts(monkeypatch: pytest.MonkeyPatch):
    manifests = rendered("large")
    (config,) = by_kind(manifests, "ConfigMap")
    (workers,) = by_kind(manifests, "StatefulSet")
    literal = {e["name"]: e["value"] for e in workers["spec"]["template"]["spec"]["containers"][0][
        "env"] if "value" in e}
    for name in [n for n in os.environ if n.startswith("COSMIC_")]:
        monkeypatch.delenv(name)
    for name, value in {**config["data"], **literal,
                        "COSMIC_POSTGRES__PASSWORD": "x", "COSMIC_CLICKHOUSE__PASSWORD": "x",
                        "COSMIC_PHYSICS__WORKER_ID": "physics-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COSMIC_CONFIG", "/nonexistent/cosmic.toml")
    # A misspelt key fails here: every section refuses fields it does not have.
    s = Settings()
    assert s.kafka.bootstrap_servers == "cosmic-kafka-bootstrap.cosmic-prod.svc:9092"
    assert s.kafka.replication_factor == 3 and s.physics.worker_id == "physics-1"
    assert s.metrics.port == 9464 and not s.metrics.publish
    assert s.postgres.host == "timescale.db.internal"


def test_settings_changed_where_it_is_rendered_reach_the_pods_but_secrets_do_not():
    base = Settings()
    settings = base.with_overrides(
        physics=base.physics.model_copy(update={"hibernate_after_s": 30.0}),
        living=base.living.model_copy(update={"start_from": "earliest"}),
        postgres=base.postgres.model_copy(update={"password": SecretStr("hunter2")}),
        kafka=base.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"}))
    manifests = k8s.render(settings, k8s.load_values(VALUES["small"]))
    (config,) = by_kind(manifests, "ConfigMap")
    data = config["data"]
    assert data["COSMIC_PHYSICS__HIBERNATE_AFTER_S"] == "30.0"
    assert data["COSMIC_LIVING__START_FROM"] == "earliest"
    # The cluster's own address wins over the laptop's; a password never travels.
    assert data["COSMIC_KAFKA__BOOTSTRAP_SERVERS"].endswith(".svc:9092")
    assert "hunter2" not in k8s.to_yaml(manifests)
    (plain,) = by_kind(k8s.render(base, k8s.load_values(VALUES["small"])), "ConfigMap")
    assert "COSMIC_PHYSICS__HIBERNATE_AFTER_S" not in plain["data"]
