"""Apache Kafka 4.x in KRaft mode (combined broker + controller), run from its Maven artifacts.

One node by default; ``settings.kafka.brokers`` nodes on loopback for a replicated
cluster (``cosmic stack up --kafka-brokers 3``): node 1 is the service ``kafka``, the
others ``kafka-2``, ``kafka-3``..., each its own process, folder, log and ports, all
formatted with one cluster id and voting in one KRaft quorum. The internal topics are
replicated on up to three nodes with ``min.insync.replicas`` 2 (where there are three),
and so are the platform's topics (``replication_factor`` follows ``brokers``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

from cosmic import acls, secrets, security, tls
from cosmic import kafka as kafka_clients
from cosmic.errors import DependencyMissing, StackError
from cosmic.settings import Settings
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

# The option by which each tool takes a client configuration file (the admin identity's
# SASL settings); most admin tools call it --command-config. Not listed: no such option.
_CONFIG_FLAG: dict[str, str] = {
    "producer-perf-test": "--producer.config",
    "console-producer": "--producer.config",
    "consumer-perf-test": "--consumer.config",
    "console-consumer": "--consumer.config",
    "streams-application-reset": "--config-file",
} | {name: "--command-config" for name in (
    "topics", "consumer-groups", "share-groups", "get-offsets", "transactions",
    "metadata-quorum", "log-dirs", "configs", "features", "reassign-partitions",
    "delete-records")}

# StandardAuthorizer is KRaft's authorizer: ACLs live in the metadata log.
_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"

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


def node_name(node: int) -> str:
    return "kafka" if node == 1 else f"kafka-{node}"


class KafkaService(LocalService):
    name = "kafka"

    def __init__(self, settings: Settings, node: int = 1) -> None:
        self.node = node
        self.name = node_name(node)
        super().__init__(settings)

    @property
    def port(self) -> int:
        return self.settings.kafka.node_ports(self.node)[0]

    @property
    def controller_port(self) -> int:
        return self.settings.kafka.node_ports(self.node)[1]

    @property
    def _last(self) -> bool:
        """The node whose start completes the quorum: it waits for the whole cluster."""
        return self.node >= self.settings.kafka.brokers

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
        k = self.settings.kafka
        return {
            "bootstrap_servers": k.bootstrap_servers,
            "broker": f"127.0.0.1:{self.port}",
            "controller": f"127.0.0.1:{self.controller_port}",
            "node_id": self.node,
        } | ({} if self._tls_port is None else {
            "tls": f"127.0.0.1:{self._tls_port}", "ca": str(tls.ca_path(self.settings.state_dir))})

    @property
    def _tls_port(self) -> int | None:
        """This node's SASL_SSL port: kafka.tls_port for node 1, the next ones after it."""
        k = self.settings.kafka
        return None if k.tls_port is None else k.tls_port + self.node - 1

    @property
    def _config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def _client_config_file(self) -> Path:
        return self.home / "admin-client.properties"

    @property
    def _sasl_marker(self) -> Path:
        # Written when the storage was formatted with the SCRAM users: a data folder
        # without it was formatted by an unsecured stack and has no credentials at all.
        return self.home / "data" / "cosmic-sasl-formatted"

    def _password(self, identity: str) -> str:
        return secrets.ensure(self.settings.state_dir, "kafka", identity)

    def _identities(self) -> list[str]:
        return [i.name for i in acls.identities(self.settings)]

    def _listener_properties(self) -> dict[str, str]:
        k = self.settings.kafka
        broker = f"127.0.0.1:{self.port}"
        controller = f"CONTROLLER://127.0.0.1:{self.controller_port}"
        if not k.secured:
            if k.tls_port is not None:
                raise StackError("kafka.tls_port is a SASL_SSL listener: it needs the secured "
                                 "stack (security_protocol SASL_PLAINTEXT or SASL_SSL)")
            return {
                "listeners": f"PLAINTEXT://{broker},{controller}",
                "advertised.listeners": f"PLAINTEXT://{broker}",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            }
        admin = self._password(acls.ADMIN)
        mech = k.sasl_mechanism.lower()
        tls_listener = "" if self._tls_port is None else f",SASL_SSL://127.0.0.1:{self._tls_port}"
        return {
            "listeners": f"SASL_PLAINTEXT://{broker}{tls_listener},{controller}",
            "advertised.listeners": f"SASL_PLAINTEXT://{broker}{tls_listener}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
                + (",SASL_SSL:SASL_SSL" if tls_listener else ""),
            # Clients and the broker itself (transaction markers go through this
            # listener) authenticate by SCRAM against credentials in the metadata log.
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": k.sasl_mechanism,
            "sasl.mechanism.inter.broker.protocol": k.sasl_mechanism,
            f"listener.name.sasl_plaintext.{mech}.sasl.jaas.config":
                f'{_SCRAM_MODULE} required username="{acls.ADMIN}" password="{admin}";',
            # KRaft controllers cannot check SCRAM (its credentials are in the metadata
            # they serve), so the controller listener uses PLAIN with the one static
            # admin user: nobody else can talk to the quorum.
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config":
                f'{_PLAIN_MODULE} required username="{acls.ADMIN}" password="{admin}" '
                f'user_{acls.ADMIN}="{admin}";',
            "authorizer.class.name": _AUTHORIZER,
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{acls.ADMIN}",
        } | self._tls_properties()

    def _tls_properties(self) -> dict[str, str]:
        """The optional SASL_SSL listener: the same SCRAM logins and ACLs, over TLS with a
        certificate from the stack's development CA (cosmic/tls.py) for 127.0.0.1."""
        k = self.settings.kafka
        if k.tls_port is None:
            return {}
        mech = k.sasl_mechanism.lower()
        server = tls.server_identity(self.settings.state_dir, "kafka", ["127.0.0.1", "localhost"])
        return {
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": k.sasl_mechanism,
            f"listener.name.sasl_ssl.{mech}.sasl.jaas.config": f"{_SCRAM_MODULE} required;",
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(server.keystore),
            "listener.name.sasl_ssl.ssl.client.auth": "none",  # clients prove who they are by SCRAM
            "listener.name.sasl_ssl.ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
        }

    def _server_properties(self) -> str:
        k = self.settings.kafka
        data = self.home / "data"
        voters = ",".join(f"{n}@127.0.0.1:{k.node_ports(n)[1]}" for n in range(1, k.brokers + 1))
        replicas = str(min(3, k.brokers))
        min_isr = str(min(2, k.brokers))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            **self._listener_properties(),
            "log.dirs": str(data),
            "num.partitions": str(k.default_partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            # With three replicas an acknowledged write (acks=all) is on two of them: one
            # node may die without losing it, and producers go on.
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            # Nodes start together on a busy host: give the others time to come up.
            "initial.broker.registration.timeout.ms": "180000",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.segment.bytes": str(64 * 2**20),
            "log.cleaner.dedupe.buffer.size": str(16 * 2**20),
            "message.max.bytes": str(64 * 2**20),
            "replica.fetch.max.bytes": str(64 * 2**20),
        }
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _write_private(self, path: Path, text: str) -> None:
        # These files hold passwords: readable by their owner only, from the first byte.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.chmod(path, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)

    def prepare(self) -> None:
        self.install()
        self._write_private(self._config_file, self._server_properties())
        self._write_private(self._client_config_file, "".join(
            f"{key}={value}\n" for key, value in
            kafka_clients.java_security_properties(self.settings.as_identity(acls.ADMIN)).items()
        ) if self.settings.kafka.secured else "security.protocol=PLAINTEXT\n")
        (self.home / "log4j2.properties").write_text(_LOG4J2.format(level="INFO"))
        secured = self.settings.kafka.secured
        cluster_id = self._cluster_id()
        if (self.home / "data" / "meta.properties").exists():
            if secured and not self._sasl_marker.exists():
                raise StackError(
                    f"kafka's storage at {self.home / 'data'} was formatted without SCRAM "
                    "users (by a stack from before SASL), so no client could log in: move "
                    "that folder away to start afresh (its topics go with it), or run this "
                    "stack unsecured with COSMIC_KAFKA__SECURITY_PROTOCOL=PLAINTEXT")
            return
        # SCRAM users go in at format time: with only SASL listeners, a fresh broker
        # could not be reached to add the first credential by the admin API, and the
        # broker authenticates to itself as admin. Later identities are added after
        # start (after_ready) by the admin API, so an older state folder catches up.
        scram = [arg for name in self._identities() for arg in (
            "--add-scram",
            f"{self.settings.kafka.sasl_mechanism}=[name={name},password={self._password(name)}]",
        )] if secured else []
        result = subprocess.run(
            [*self._java_prefix(), "kafka.tools.StorageTool", "format",
             # One token: a random id may start with "-", which argparse would take for an option.
             f"--cluster-id={cluster_id}", "-c", str(self._config_file), "--ignore-formatted",
             *scram],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            # The formatter echoes no passwords, but keep the tail short anyway.
            raise StackError(
                f"kafka storage format failed: {(result.stdout + result.stderr).strip()[-800:]}"
            )
        if secured:
            self._sasl_marker.write_text("formatted with SCRAM users by cosmic stack\n")

    def prepare_cluster(self) -> None:
        """What every node must agree on, made once before nodes start side by side: the
        cluster id and the identities' passwords (SCRAM users are formatted into each)."""
        self.install()
        self._cluster_id()
        if self.settings.kafka.secured:
            for name in self._identities():
                self._password(name)

    def _cluster_id(self) -> str:
        """The one id every node of this stack is formatted with, made by the first node
        and kept with the node count in ``<state dir>/kafka-cluster.json``: a KRaft
        quorum's voters are fixed when it is formatted, so another count is refused."""
        path = self.settings.state_dir / "kafka-cluster.json"
        want = self.settings.kafka.brokers
        if path.exists():
            cluster = json.loads(path.read_text())
        elif (old := self.settings.state_dir / "kafka" / "data" / "meta.properties").exists():
            # A one-node stack from before this file: its id is in its storage.
            props = dict(line.split("=", 1) for line in old.read_text().splitlines()
                         if "=" in line and not line.startswith("#"))
            cluster = {"cluster_id": props["cluster.id"].strip(), "brokers": 1}
        else:
            made = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            cluster = {"cluster_id": made, "brokers": want}
        if cluster["brokers"] != want:
            raise StackError(
                f"this stack's Kafka was formatted as {cluster['brokers']} node(s), not {want}: "
                f"a KRaft quorum keeps its voters; use COSMIC_KAFKA__BROKERS="
                f"{cluster['brokers']}, or move {self.settings.state_dir} away to start afresh")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}")
            tmp.write_text(json.dumps(cluster))
            tmp.replace(path)
        return str(cluster["cluster_id"])

    def after_ready(self) -> None:
        """Every identity of cosmic/acls.py has a credential, and exactly its ACLs."""
        if not self.settings.kafka.secured or not self._last:
            return
        admin = self.settings.as_identity(acls.ADMIN)
        security.ensure_scram_users(admin, self._password, self._identities())
        security.reconcile_acls(admin)

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
        if not self._last:
            # A node of a quorum not complete yet serves no clients; its controller
            # listener is up as soon as it runs, and the last node waits for them all.
            with socket.create_connection(("127.0.0.1", self.controller_port), timeout=timeout_s):
                return
        # As admin: it is the one identity sure to exist (the formatter made it).
        brokers = kafka_clients.wait_for_cluster(self.settings.as_identity(acls.ADMIN), timeout_s)
        want = self.settings.kafka.brokers
        if brokers < want:
            raise StackError(f"{brokers} of {want} brokers registered")

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
        flag = _CONFIG_FLAG.get(name)
        if flag and self.settings.kafka.secured and flag not in args and "--help" not in args:
            # The tools connect as admin, with the properties file prepare() wrote.
            args = [*args, flag, str(self._client_config_file)]
        return [*self._java_prefix(), main_class, *args]

    @staticmethod
    def _needs_bootstrap(name: str, args: list[str]) -> bool:
        if name in {"storage", "producer-perf-test", "console-producer"}:
            return False
        flags = {"--bootstrap-server", "--bootstrap-servers", "--bootstrap-controller", "--help"}
        return not flags.intersection(args)
