"""The values file: what a deployment chooses that the settings cannot know.

Settings (cosmic/settings.py) say how the platform behaves: group ids, ports, the
Kafka version, checkpoint intervals. A values file says how big one deployment is
and where it lives: namespace, image, replicas, resources, storage, the addresses
of the stores it is given, and the names of the Secrets holding their passwords.
It is YAML, validated strictly: an unknown key is an error, never ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cosmic.errors import ConfigError


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Resources(_Part):
    """Requests and limits of one container. Memory limit = request: an evicted pod
    is better than a node that swaps under a physics worker."""

    cpu: str = "250m"
    memory: str = "512Mi"
    cpu_limit: str | None = None  # None: no CPU limit (throttling costs ticks)

    def spec(self) -> dict[str, dict[str, str]]:
        limits = {"memory": self.memory}
        if self.cpu_limit:
            limits["cpu"] = self.cpu_limit
        return {"requests": {"cpu": self.cpu, "memory": self.memory}, "limits": limits}


class Scaled(_Part):
    """A consumer-group service: its replica range and the lag that adds one."""

    replicas: int = Field(default=1, ge=1)  # the floor KEDA keeps; never zero
    max_replicas: int = Field(default=1, ge=1)
    # KEDA adds a replica per this many records of lag (per partition, summed).
    lag_threshold: int = Field(default=1000, ge=1)
    resources: Resources = Resources()


class NodePool(_Part):
    replicas: int = Field(default=3, ge=1)
    storage: str = "20Gi"
    resources: Resources = Resources(cpu="500m", memory="2Gi")


class Kafka(_Part):
    name: str = "cosmic"  # the Strimzi cluster, and the prefix of its Services
    replication: int = Field(default=3, ge=1)
    min_insync_replicas: int = Field(default=2, ge=1)
    brokers: NodePool = NodePool()
    controllers: NodePool = NodePool(storage="5Gi", resources=Resources(memory="1Gi"))
    storage_class: str | None = None


class Store(_Part):
    """An external store: where it is and the Secret key holding its password."""

    host: str
    secret: str
    secret_key: str = "password"


class Flink(_Part):
    image: str = "cosmic-garden-flink:0.1.0"
    # The operator's FlinkVersion enum value for the image's Flink (PyFlink 2.2 here).
    version: str = "v2_2"
    parallelism: int = Field(default=1, ge=1)
    task_slots: int = Field(default=1, ge=1)
    jobmanager: Resources = Resources(cpu="500m", memory="1Gi")
    taskmanager: Resources = Resources(cpu="1", memory="2Gi")
    # Durable storage for checkpoints and HA metadata (s3://, gs://, or a mounted path).
    state_uri: str = "s3://cosmic-flink"
    # The account the operator's chart grants pod and ConfigMap rights (HA) in the namespace.
    service_account: str = "flink"


class Spark(_Part):
    image: str = "cosmic-garden-spark:0.1.0"
    version: str = "4.2.0"  # pyspark, and the spark-avro/kafka JARs built for it
    schedule: str = "30 2 * * *"  # UTC, after the archive has closed yesterday's files
    driver: Resources = Resources(cpu="1", memory="2Gi")
    executor: Resources = Resources(cpu="1", memory="4Gi")
    executors: int = Field(default=2, ge=1)
    # The driver's account, which may create executor pods (the operator's chart makes it).
    service_account: str = "spark-operator-spark"


class Values(_Part):
    namespace: str = "cosmic"
    image: str = "cosmic-garden:0.1.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # Where the code lives inside the images (jobs/spark/warehouse.py is under it).
    app_root: str = "/opt/cosmic"
    kafka: Kafka = Kafka()
    physics: Scaled = Scaled(replicas=2, max_replicas=3, lag_threshold=200,
                             resources=Resources(cpu="1", memory="2Gi"))
    gateway: Scaled = Scaled(replicas=2, max_replicas=4)
    ecosystem: Scaled = Scaled()
    civilization: Scaled = Scaled()
    timescale: Scaled = Scaled()
    clickhouse: Scaled = Scaled()
    archive: Scaled = Scaled()
    gateway_service_type: Literal["ClusterIP", "LoadBalancer", "NodePort"] = "LoadBalancer"
    # Percent of requested CPU above which KEDA adds a gateway.
    gateway_cpu_target: int = Field(default=70, ge=1, le=100)
    registry_url: str = "http://schema-registry:8081"
    postgres: Store = Store(host="postgres", secret="cosmic-postgres")
    clickhouse_store: Store = Store(host="clickhouse", secret="cosmic-clickhouse")
    # Secrets made once by an operator (never rendered): the command keys every gateway
    # signs with and every worker verifies with, and the gateway's token key pair.
    command_keys_secret: str = "cosmic-command-keys"
    token_keys_secret: str = "cosmic-token-keys"
    lake_size: str = "100Gi"
    lake_storage_class: str | None = None  # must offer ReadWriteMany (archive + Spark)
    flink: Flink = Flink()
    spark: Spark = Spark()


def load_values(path: Path | None) -> Values:
    """The values in ``path`` over the defaults (None: the defaults alone)."""
    if path is None:
        return Values()
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return Values.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"values file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"values file {path}: not YAML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"values file {path}: {where}: {first['msg']} "
                          f"({exc.error_count()} error(s))") from None
