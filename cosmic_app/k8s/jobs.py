"""The jobs, handed to their operators: live metrics to Flink's, the warehouse to Spark's.

Neither job is run by our code on a cluster: the Flink Kubernetes Operator owns
the live-metrics job's JobManager, its upgrades (from the last checkpoint) and its
HA; the Spark Operator submits the nightly warehouse build on a cron schedule.
"""

from __future__ import annotations

from typing import Any

from cosmic.settings import Settings
from cosmic_app.k8s.kafka import Manifest
from cosmic_app.k8s.values import Resources, Values
from cosmic_app.k8s.workloads import LAKE_CLAIM, LAKE_DIR, SETTINGS_CONFIGMAP, container_env


def _flink_resource(r: Resources) -> dict[str, Any]:
    # The operator takes CPUs as a number and memory as Flink's own size syntax.
    cpu = float(r.cpu[:-1]) / 1000 if r.cpu.endswith("m") else float(r.cpu)
    return {"cpu": cpu, "memory": r.memory.replace("Gi", "g").replace("Mi", "m")}


def live_metrics(settings: Settings, values: Values, secured: bool) -> Manifest:
    lm, f = settings.live_metrics, values.flink
    env = container_env(values, "jobs" if secured else None)
    return {
        "apiVersion": "flink.apache.org/v1beta1", "kind": "FlinkDeployment",
        "metadata": {"name": "live-metrics", "namespace": values.namespace},
        "spec": {
            "image": f.image, "imagePullPolicy": values.image_pull_policy,
            "flinkVersion": f.version, "serviceAccount": f.service_account,
            "flinkConfiguration": {
                "taskmanager.numberOfTaskSlots": str(f.task_slots),
                "execution.checkpointing.interval": f"{lm.checkpoint_interval_ms}ms",
                # Exactly-once sinks need checkpoints that survive the JobManager.
                "execution.checkpointing.mode": "EXACTLY_ONCE",
                "state.checkpoints.dir": f"{f.state_uri}/checkpoints",
                "state.savepoints.dir": f"{f.state_uri}/savepoints",
                "high-availability.type": "kubernetes",
                "high-availability.storageDir": f"{f.state_uri}/ha",
                # The UDF workers run the image's Python, not the submitter's.
                "python.executable": "python3",
            },
            "jobManager": {"replicas": 1, "resource": _flink_resource(f.jobmanager)},
            "taskManager": {"resource": _flink_resource(f.taskmanager)},
            "podTemplate": {"spec": {"containers": [{
                "name": "flink-main-container",
                "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIGMAP}}], "env": env}]}},
            "job": {
                "jarURI": "local:///opt/flink/opt/flink-python.jar",
                "entryClass": "org.apache.flink.client.python.PythonDriver",
                "args": ["-pym", "jobs.flink.live_metrics", "--group-id", lm.group_id],
                "parallelism": f.parallelism,
                # An upgrade resumes from the newest checkpoint: no window is lost or
                # counted twice, and no savepoint has to be taken by hand.
                "upgradeMode": "last-state",
                "state": "running",
            },
        },
    }


def _spark_role(r: Resources, account: str | None, values: Values,
                env: list[dict[str, Any]]) -> dict[str, Any]:
    cores = max(1, int(float(r.cpu[:-1]) / 1000) if r.cpu.endswith("m") else int(float(r.cpu)))
    out: dict[str, Any] = {
        "cores": cores, "memory": r.memory.replace("Gi", "g").replace("Mi", "m"),
        "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIGMAP}}], "env": env,
        "volumeMounts": [{"name": "lake", "mountPath": LAKE_DIR, "readOnly": True}],
    }
    if account:
        out["serviceAccount"] = account
    return out


def warehouse(settings: Settings, values: Values, secured: bool) -> Manifest:
    s = values.spark
    env = container_env(values, "jobs" if secured else None)
    executor = _spark_role(s.executor, None, values, env)
    executor["instances"] = s.executors
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
        "metadata": {"name": "warehouse", "namespace": values.namespace},
        "spec": {
            "schedule": s.schedule, "timeZone": "Etc/UTC",
            # A night's build that overruns must not race the next one on the same marts.
            "concurrencyPolicy": "Forbid",
            "successfulRunHistoryLimit": 3, "failedRunHistoryLimit": 5,
            "template": {
                "type": "Python", "pythonVersion": "3", "mode": "cluster",
                "image": values.spark.image, "imagePullPolicy": values.image_pull_policy,
                "sparkVersion": s.version,
                "mainApplicationFile": f"local://{values.app_root}/jobs/spark/warehouse.py",
                "arguments": ["--date", "yesterday"],
                "restartPolicy": {"type": "OnFailure", "onFailureRetries": 2,
                                  "onFailureRetryInterval": 300},
                "volumes": [{"name": "lake", "persistentVolumeClaim": {
                    "claimName": LAKE_CLAIM, "readOnly": True}}],
                "driver": _spark_role(s.driver, s.service_account, values, env),
                "executor": executor,
            },
        },
    }
