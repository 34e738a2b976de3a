"""Apache Kafka 4.x in KRaft mode (combined broker + controller), run from its Maven artifacts."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from cosmic import kafka as kafka_clients
from cosmic.errors import DependencyMissing, StackError
from cosmic.stack import artifacts
from cosmic.stack.service import LocalService

# Kafka's shell scripts are thin wrappers around these classes; we run the same
# classes from the same classpath, so `cosmic stack kafka-tool NAME` matches
# `kafka-NAME.sh` of a binary distribution.
TOOLS: dict[str, str] = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "share-groups": "org.apache.kafka.tools.consumer.group.ShareGroupCommand",
    "producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
    "e2e-latency": "org.apache.kafka.tools.EndToEndLatency",
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "transactions": "org.apache.kafka.tools.TransactionsCommand",
    "metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    "configs": "kafka.admin.ConfigCommand",
    "features": "org.apache.kafka.tools.FeatureCommand",
    "reassign-partitions": "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
    "delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "streams-application-reset": "org.apache.kafka.tools.StreamsResetter",
    "storage": "kafka.tools.StorageTool",
}

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRefs = stdout
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.state.name = state.change.logger
logger.state.level = warn
"""


def java_bin() -> str:
    java = shutil.which("java")
    if java is None:
        raise DependencyMissing("java", "install a JDK 17: `apt-get install openjdk-17-jre-headless`")
    return java


class KafkaService(LocalService):
    name = "kafka"

    @property
    def port(self) -> int:
        return self.settings.kafka.port

    @property
    def lib_dir(self) -> Path:
        return self.settings.cache_dir / f"kafka-{self.settings.kafka.version}" / "lib"

    def install(self) -> Path:
        return artifacts.resolve(
            artifacts.INFRA_LOCAL / "kafka-pom.xml",
            self.lib_dir,
            {"kafka.version": self.settings.kafka.version},
        )

    def classpath(self) -> str:
        lib = self.install()
        return os.pathsep.join(sorted(str(p) for p in lib.glob("*.jar")))

    def endpoint(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.settings.kafka.bootstrap_servers,
            "controller": f"127.0.0.1:{self.settings.kafka.controller_port}",
        }

    @property
    def _config_file(self) -> Path:
        return self.home / "server.properties"

    def _server_properties(self) -> str:
        k = self.settings.kafka
        data = self.home / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{k.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{k.port},CONTROLLER://127.0.0.1:{k.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{k.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": str(k.default_partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.segment.bytes": str(64 * 2**20),
            "log.cleaner.dedupe.buffer.size": str(16 * 2**20),
            "message.max.bytes": str(64 * 2**20),
            "replica.fetch.max.bytes": str(64 * 2**20),
        }
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def prepare(self) -> None:
        self.install()
        self._config_file.write_text(self._server_properties())
        (self.home / "log4j2.properties").write_text(_LOG4J2.format(level="INFO"))
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        result = subprocess.run(
            [*self._java_prefix(), "kafka.tools.StorageTool", "format",
             # One token: a random id may start with "-", which argparse would take for an option.
             f"--cluster-id={cluster_id}", "-c", str(self._config_file), "--ignore-formatted"],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise StackError(
                f"kafka storage format failed: {(result.stdout + result.stderr).strip()[-800:]}"
            )

    def _java_prefix(self, heap: str = "256m") -> list[str]:
        return [
            java_bin(),
            f"-Xmx{heap}",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp", self.classpath(),
        ]

    def command(self) -> list[str]:
        heap = self.settings.kafka.heap
        return [
            java_bin(), f"-Xms{heap}", f"-Xmx{heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp", self.classpath(),
            "kafka.Kafka", str(self._config_file),
        ]

    def executable(self) -> str:
        return "java"

    def probe(self, timeout_s: float) -> None:
        kafka_clients.wait_for_cluster(self.settings, timeout_s)

    def version(self) -> str | None:
        """What the running broker said at start-up (its log), not what settings ask for."""
        found = None
        kraft = False
        try:
            with self.log_file.open("r", errors="replace") as log:
                for line in log:
                    if line.startswith("=== cosmic: starting kafka"):
                        found, kraft = None, False  # a later start: only its lines count
                    elif "Kafka version: " in line:
                        found = line.split("Kafka version: ", 1)[1].split()[0]
                    elif "kafka.raft." in line:
                        kraft = True
        except OSError:
            return None
        if found is None:
            return None
        return f"{found} (KRaft)" if kraft else found

    def tool_command(self, tool: str, args: list[str]) -> list[str]:
        """The java command line running one of Kafka's own tools."""
        name = tool.removesuffix(".sh").removeprefix("kafka-")
        main_class = TOOLS.get(name) or (tool if "." in tool and not tool.endswith(".sh") else None)
        if main_class is None:
            known = ", ".join(sorted(TOOLS))
            raise StackError(f"unknown Kafka tool {tool!r}; known tools: {known}")
        if self._needs_bootstrap(name, args):
            args = ["--bootstrap-server", self.settings.kafka.bootstrap_servers, *args]
        return [*self._java_prefix(), main_class, *args]

    @staticmethod
    def _needs_bootstrap(name: str, args: list[str]) -> bool:
        if name in {"storage", "producer-perf-test", "console-producer"}:
            return False
        flags = {"--bootstrap-server", "--bootstrap-servers", "--bootstrap-controller", "--help"}
        return not flags.intersection(args)
