"""Typed settings: the one place the platform reads its environment.

Values come, highest priority first, from keyword arguments, ``COSMIC_*``
environment variables (nested with ``__``, e.g. ``COSMIC_KAFKA__BOOTSTRAP_SERVERS``),
an optional ``cosmic.toml`` (path overridable with ``COSMIC_CONFIG``), and the
defaults below, which describe the embedded local stack on loopback.

=====================================  ==========================================
key (env)                              meaning
=====================================  ==========================================
COSMIC_STATE_DIR                       folder holding every local service's data
COSMIC_CACHE_DIR                       folder caching downloaded Java artifacts
COSMIC_KAFKA__BOOTSTRAP_SERVERS        Kafka bootstrap servers
COSMIC_KAFKA__PORT / CONTROLLER_PORT   ports of the local KRaft broker
COSMIC_KAFKA__SECURITY_PROTOCOL        SASL_PLAINTEXT (default), SASL_SSL, or PLAINTEXT (security off)
COSMIC_KAFKA__IDENTITY                 SASL user this process is (default admin; see cosmic/acls.py)
COSMIC_KAFKA__SASL_PASSWORD            its password (default: <state_dir>/secrets/kafka/<identity>)
COSMIC_KAFKA__TLS_PORT                 the local broker also listens SASL_SSL here (default: no TLS)
COSMIC_KAFKA__SSL_CA_LOCATION          CA a SASL_SSL client verifies the broker with (default:
                                       the local stack's, <state_dir>/secrets/tls/ca.pem)
COSMIC_KAFKA__DEFAULT_PARTITIONS       partitions for topics created here
COSMIC_KAFKA__REPLICATION_FACTOR       replication factor for topics created here
COSMIC_REGISTRY__URL                   Confluent-compatible schema registry URL
COSMIC_REGISTRY__PORT                  port of the embedded registry
COSMIC_REGISTRY__USERNAME/PASSWORD     HTTP basic credentials for registry writes (default
                                       password: <state_dir>/secrets/registry/<username>)
COSMIC_POSTGRES__HOST/PORT/USER/...    PostgreSQL endpoint and credentials (default password:
                                       <state_dir>/secrets/postgres/<user>)
COSMIC_POSTGRES__TIMESCALE             auto | on | off: TimescaleDB or the native fallback
COSMIC_CLICKHOUSE__HOST/PORT/...       ClickHouse endpoint (native and HTTP ports) and credentials
                                       (default password: <state_dir>/secrets/clickhouse/<user>)
COSMIC_STARTUP_TIMEOUT_S               how long to wait for a service to answer
COSMIC_LAKE_DIR                        archive lake folder (default: <state_dir>/lake)
COSMIC_CONNECTORS__BATCH_ROWS/...      connectors' batch size, batch interval, backoff cap
COSMIC_PHYSICS__WORKER_ID/SHARD/...    physics worker: identity, shard, hibernation, world cap,
                                       group membership (leave on stop, session, heartbeat)
COSMIC_LIVING__TOPIC_PREFIX/...        Faust apps' ids, topic prefix, ecosystem pacing
COSMIC_LIVE_METRICS__WINDOW_MS/...     live-metrics job: window, lateness, checkpoints
COSMIC_SPARK__MASTER/DRIVER_MEMORY     spark-submit's master and driver memory (warehouse)
COSMIC_GATEWAY__HOST/HTTP_PORT/...     gateway: address, ports, client budget, quantization grid
COSMIC_SECURITY__REQUIRE_SIGNED_...    who may do what: signed commands, command keys, tokens
COSMIC_SECURITY__TOKEN_ISSUER/...      tokens (issuer, audience, lifetime, skew, OIDC), rate limits
COSMIC_METRICS__HOST/PORT/PUBLISH      each process's /metrics (port 0: a free one) and its target
COSMIC_PROMETHEUS__PORT/...            the local stack's Prometheus: port, scrape interval, retention
COSMIC_LAG__INTERVAL_S/STALL_AFTER_S   the lag exporter: sampling interval, status rules
COSMIC_LOG__FORMAT/LEVEL               log lines: text (default) or json; the level
COSMIC_TRACING__EXPORTER/ENDPOINT      traces: none (default), otlp (to ENDPOINT) or memory
=====================================  ==========================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from cosmic import secrets


def _default_state_dir() -> Path:
    # As root, PostgreSQL runs as the unprivileged `postgres` user, which cannot
    # enter /root: keep service data where system services keep theirs.
    if os.geteuid() == 0:
        return Path("/var/lib/cosmic")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cosmic"


def _default_cache_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/cache/cosmic")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cosmic"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # Where generated passwords are read from: set by Settings to its state folder, so a
    # section resolves its password lazily, when a client is built (the stack may make the
    # file after these settings were read).
    _state_dir: Path | None = PrivateAttr(default=None)

    def _stored(self, service: str, name: str, explicit: SecretStr | None) -> str:
        """The password set in the settings, else the one the stack stored, else "": a
        client then offers none, and a server that needs one says so (a store that
        needs none, or a stack not started yet, still gets its plain "unavailable")."""
        if explicit is not None:
            return explicit.get_secret_value()
        if self._state_dir is None:
            return ""
        where = secrets.path(self._state_dir, service, name)
        return where.read_text().strip() if where.exists() else ""


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    port: int = 19092
    controller_port: int = 19093
    # The local stack's KRaft nodes (each broker and controller): broker i listens on
    # port + 2(i-1), its controller on controller_port + 2(i-1). With more than one, the
    # bootstrap list names every broker and topics are replicated on up to three, unless
    # those are set explicitly.
    brokers: int = Field(default=1, ge=1, le=9)
    version: str = "4.1.1"
    heap: str = "512m"
    default_partitions: int = 3
    replication_factor: int = 1
    client_id: str = "cosmic"
    # Secured by default: SCRAM over SASL, as the local stack's broker requires. PLAINTEXT
    # turns authentication off (a cluster with no listener security; the local stack then
    # starts without SASL and ACLs too).
    security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL", "PLAINTEXT"] = "SASL_PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    # Who this process is to the broker: a user of cosmic/acls.py. Tools and tests are
    # admin; `cosmic up` runs each service as its own identity (Settings.as_identity).
    identity: str = "admin"
    # None: the password the local stack generated for `identity`.
    sasl_password: SecretStr | None = None
    # Set: the local broker has a second client listener there, SASL_SSL on 127.0.0.1, with
    # a certificate from the stack's development CA (cosmic/tls.py). Its clients set
    # security_protocol SASL_SSL and bootstrap_servers to this port.
    tls_port: int | None = None
    # The CA a SASL_SSL client verifies the broker's certificate with; None: the local
    # stack's development CA (<state_dir>/secrets/tls/ca.pem), when there is one.
    ssl_ca_location: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _cluster_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or int(data.get("brokers", 1)) <= 1:
            return data
        n = int(data["brokers"])
        port = int(data.get("port", 19092))
        derived = {
            "bootstrap_servers": ",".join(f"127.0.0.1:{port + 2 * i}" for i in range(n)),
            "replication_factor": min(3, n),
        }
        return {**derived, **data}

    @property
    def secured(self) -> bool:
        return self.security_protocol != "PLAINTEXT"

    def node_ports(self, node: int) -> tuple[int, int]:
        """(broker port, controller port) of local KRaft node ``node`` (1-based)."""
        return self.port + 2 * (node - 1), self.controller_port + 2 * (node - 1)

    def password(self) -> str:
        """This identity's SASL password (from the settings, else the stack's secrets)."""
        return self._stored("kafka", self.identity, self.sasl_password)


class RegistrySettings(_Section):
    url: str = "http://127.0.0.1:18081"
    port: int = 18081
    topic: str = "_schemas"
    # Writes (POST, PUT, DELETE) need HTTP basic credentials; reads stay open.
    username: str = "admin"
    password: SecretStr | None = None  # None: the local stack's generated one

    def secret(self) -> str:
        return self._stored("registry", self.username, self.password)

    def auth(self) -> tuple[str, str] | None:
        """(user, password) for a client's HTTP basic authentication, or None where no
        password is set or stored (a registry that asks for none; reads need none)."""
        password = self.secret()
        return (self.username, password) if password else None


class PostgresSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 15432
    user: str = "cosmic"
    password: SecretStr | None = None  # None: the local stack's generated one
    database: str = "cosmic"
    # Which time-series path a database takes when it is first migrated: "auto" uses
    # TimescaleDB where the extension can be enabled, else native partitioning; "off"
    # forces the native fallback; "on" requires the extension (and fails without it).
    timescale: Literal["auto", "on", "off"] = "auto"

    def secret(self) -> str:
        return self._stored("postgres", self.user, self.password)

    @property
    def dsn(self) -> str:
        pw = self.secret()
        return f"postgresql://{self.user}:{pw}@{self.host}:{self.port}/{self.database}"

    @property
    def dsn_redacted(self) -> str:
        return f"postgresql://{self.user}:***@{self.host}:{self.port}/{self.database}"


class ClickHouseSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 19000
    http_port: int = 18123
    user: str = "default"
    password: SecretStr | None = None  # None: the local stack's generated one
    database: str = "cosmic"

    def secret(self) -> str:
        return self._stored("clickhouse", self.user, self.password)


class ConnectorSettings(_Section):
    # Big enough that a backlog goes to ClickHouse in few parts (~20 ms each on 18.16).
    batch_rows: int = 20_000
    batch_interval_s: float = 1.0
    backoff_max_s: float = 10.0
    # Test hook: SIGKILL the connector right after its Nth store write, before the
    # offset commit, to prove a crash there loses and duplicates nothing. 0: never.
    crash_after_write: int = 0


class PhysicsSettings(_Section):
    """The physics worker (`cosmic physics worker`, and the one `cosmic up` runs)."""

    # Stable identity: a restarted worker with the same id fences its predecessor.
    worker_id: str = "physics-0"
    # Own only the worlds "<shard>:..." ("" : the worlds without a shard); each shard is
    # its own consumer group, so shards never commit past each other's commands.
    shard: str = ""
    group_id: str = "cosmic-physics"  # the default shard's group; "<group>.<shard>" for others
    delta_tolerance: float = 1e-3  # dead-reckoning tolerance of deltas, in length units
    poll_timeout_s: float = 0.002
    # A world with no command for this long takes a final snapshot and stops ticking
    # until its next command. 0: never.
    hibernate_after_s: float = 600.0
    # Most worlds one worker ticks at once; commands that would create one more are
    # rejected with WORLD_LIMIT.
    max_worlds: int = 1000
    # Group membership (docs/deployment.md, "Many workers"). A worker that stops cleanly
    # hands its worlds over at once (leave_on_stop); one that stops with leave_on_stop off
    # keeps its static membership, and comes back within session_timeout_s to the same
    # partitions without a rebalance (a restart in place).
    leave_on_stop: bool = True
    # A crashed worker's partitions move after this long without a heartbeat.
    session_timeout_s: float = 10.0
    # How soon the workers notice a rebalance, and so most of a handover's pause.
    heartbeat_interval_s: float = 0.2
    # A crashed worker's open transaction is aborted by the broker after this long (it
    # holds read_committed readers of its partitions back until then); it must exceed
    # the longest loop iteration (one transaction).
    transaction_timeout_s: float = 10.0


class LivingSettings(_Section):
    """The Faust apps (ecosystem, civilization): ids, pacing and test isolation."""

    ecosystem_app_id: str = "cosmic-ecosystem"
    civilization_app_id: str = "cosmic-civilization"
    # Prepended to every topic the apps read or write: tests run them on private topics.
    topic_prefix: str = ""
    step_every: int = 10  # physics ticks per ecosystem step
    time_scale: float = 50.0  # ecological years per simulated orbital year
    session_timeout_s: float = 10.0
    # Where a new consumer group starts: "latest" lets a live platform with a long
    # history come alive at once; replays and tests read from "earliest".
    start_from: Literal["earliest", "latest"] = "latest"


class SparkSettings(_Section):
    """Batch jobs under spark-submit (the warehouse)."""

    master: str = "local[2]"  # local[N], spark://host:7077, yarn, k8s://...
    driver_memory: str = "1g"


class LiveMetricsSettings(_Section):
    """The live-metrics PyFlink job (jobs/flink/live_metrics.py)."""

    window_ms: int = 10_000
    # The watermark trails the newest event time by this much: events this far out of
    # order are on time.
    out_of_orderness_ms: int = 2_000
    # After a window has fired, late events still update it for this long (event time).
    allowed_lateness_ms: int = 10_000
    # A decoder subtask silent this long (wall clock) stops holding the watermark back.
    # 0: off. Off by default: with PyFlink 2.2.1 it stalled the watermark (measured).
    idle_timeout_ms: int = 0
    checkpoint_interval_ms: int = 5_000
    group_id: str = "cosmic-live-metrics"
    parallelism: int = 1
    # The Python the job's UDF workers run (None: the interpreter that submits the job,
    # right for the local mini-cluster; on a cluster, the workers' own interpreter).
    python_executable: str | None = None
    # Flink's own Prometheus reporter (the plugin PyFlink ships), published to the local
    # Prometheus like every other process. Flink binds its port on every interface (the
    # reporter has no address setting): firewall it on a shared host, or turn it off.
    prometheus_reporter: bool = True
    prometheus_port: int = 0  # 0: a free one, picked at start


class GatewaySettings(_Section):
    """The gateway (streams/gateway): the front door for game frontends."""

    host: str = "127.0.0.1"
    http_port: int = 18090  # WebSocket at /ws (later REST and the viewer)
    grpc_port: int = 18091
    # Most bytes per second one subscription is sent (and its default).
    client_bytes_per_s: int = 256 * 1024
    # Quantization grid: a shown position is within position_step * sqrt(3) / 2 of the
    # gateway's (AU and AU/yr in the demo's units).
    position_step: float = 1e-5
    velocity_step: float = 1e-4
    # A body in view leaves it only beyond the view scaled by (1 + view_hysteresis)
    # about its centre (a sphere's radius; each half-size of a box).
    view_hysteresis: float = 0.05
    max_message_bytes: int = 64 * 1024
    # A subscription whose connection ended can be resumed this long (and at most this
    # many are kept), so a reconnecting client continues without a snapshot.
    resume_window_s: float = 30.0
    max_parked: int = 10_000
    # On start, deltas are read from this far back (besides each world's snapshot), so
    # a world younger than its first snapshot is seen whole.
    lookback_s: float = 120.0
    # Admitted command ids are remembered (their outcome, and so a retry of one is
    # answered with its first offset instead of being appended again) for at most
    # command_window_s after admission, and at most max_commands of them.
    max_commands: int = 100_000
    command_window_s: float = 600.0
    # The longest an outcome request waits for a pending command to be decided.
    max_outcome_wait_s: float = 30.0
    # TLS on both faces (https and wss, gRPC over TLS): a certificate for 127.0.0.1,
    # localhost and `host` from the stack's development CA (<state_dir>/secrets/tls/ca.pem,
    # which clients then trust), unless tls_cert and tls_key name a studio's own (PEM).
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None


class SecuritySettings(_Section):
    """Identities and permissions (streams/security)."""

    # The physics worker applies only commands a gateway admitted (signed with a command
    # key); off, every command counts as an operator's (a closed test rig only).
    require_signed_commands: bool = True
    # The command keys (HMAC) gateways sign with and workers verify with; None:
    # <state_dir>/secrets/command-keys.json, created (mode 0600) on first use.
    command_keys_file: Path | None = None
    # Cheat and anomaly detection (streams/security/anomaly.py), per player and window:
    # a nudge larger than this (AU/yr, the demo's units; orbits run at ~1-10) is impossible.
    max_impulse: float = 1.0
    flag_window_s: float = 10.0
    # More commands than this per second over a window is a flood.
    flood_commands_per_s: float = 30.0
    # This many refusals for others' bodies (or operator actions) in a window.
    others_bodies_attempts: int = 5
    # A window this many times the player's own usual rate (and at least burst_min_commands).
    burst_factor: float = 8.0
    burst_min_commands: int = 50

    # Tokens (streams.security.tokens). The platform signs its own with EdDSA (Ed25519);
    # the key pair lives in <state_dir>/secrets/ (created, mode 0600, on first use).
    token_issuer: str = "cosmic-garden"
    token_audience: str = "cosmic-gateway"
    # Longest lifetime a token may have (exp - iat), and the default of issued ones.
    token_lifetime_s: int = 300
    clock_skew_s: float = 10.0  # tolerated difference of clocks for exp, nbf and iat
    # None: <state_dir>/secrets/token-signing.pem (private) and token-jwks.json (public).
    token_signing_key_file: Path | None = None
    token_jwks_file: Path | None = None
    # Development only: also accept (and issue) HS256 tokens with a shared secret
    # (<state_dir>/secrets/token-hs256.key). Never on a shared deployment.
    allow_dev_hs256: bool = False
    # An external OpenID Connect provider whose tokens are accepted too ("": none):
    # its issuer, the audience it puts in our tokens, and its key set (a file or a URL).
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_file: Path | None = None
    oidc_jwks_url: str = ""
    # The claim that names an OIDC user's role ("": every OIDC user is a player).
    oidc_role_claim: str = ""
    oidc_token_lifetime_s: int = 3600  # providers' access tokens often last an hour
    # Subscriptions need a valid token unless this is on (watching only, never commands).
    anonymous_watch: bool = False
    # Accounts (register / log in through the gateway): refresh tokens' lifetime.
    refresh_token_ttl_s: int = 30 * 24 * 3600
    # Rate limits at the gateway: a token bucket per player, world creation per player.
    commands_per_s: float = 20.0
    command_burst: int = 40
    world_creations_per_hour: float = 10.0
    world_creation_burst: int = 5
    subscriptions_per_connection: int = 16  # a gRPC channel multiplexes many
    subscriptions_per_player: int = 64
    # Largest command_json a submit may carry (bytes); the whole message is bounded by
    # gateway.max_message_bytes.
    max_command_bytes: int = 16 * 1024
    # Audit records (cosmic.audit.v1) carry this id plus a per-start suffix ("": host name).
    gateway_id: str = ""


class LogSettings(_Section):
    """Log output (cosmic/logs.py)."""

    format: Literal["text", "json"] = "text"
    level: str = "INFO"


class MetricsSettings(_Section):
    """Every process's Prometheus exposition (cosmic/metrics.py)."""

    host: str = "127.0.0.1"
    # 0: a free port, written to the process's file_sd target and its log.
    port: int = 0
    # Write a file_sd target for the local Prometheus (<state_dir>/prometheus/targets).
    publish: bool = True
    targets_dir: Path | None = None


class TracingSettings(_Section):
    """Distributed tracing (cosmic/tracing.py): one trace per command, gateway to gateway."""

    # none: no tracer at all (the default; costs a None check per hook). otlp: spans go
    # to ``endpoint`` (OTLP, protobuf over HTTP) in batches. memory: kept in the process
    # (tests, benchmarks).
    exporter: Literal["none", "otlp", "memory"] = "none"
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    # Fraction of the traces begun at the gateway that are recorded; a command's trace
    # is recorded whole or not at all (the worker follows the gateway's decision).
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


class PrometheusSettings(_Section):
    """The local stack's Prometheus (Debian's package)."""

    port: int = 19090
    scrape_interval_s: float = 5.0
    evaluation_interval_s: float = 5.0
    retention: str = "2d"


class LagSettings(_Section):
    """The lag exporter (cosmic/lag.py): how often it samples, and its status rules."""

    # Each sample asks for every group's offsets (one request a group): on a box of two
    # cores with ~300 groups a sample costs ~0.3 s of CPU, so not every second.
    interval_s: float = 5.0
    # A group with lag whose committed offset has not moved for this long is STALLED.
    stall_after_s: float = 30.0
    # A group whose lag in records grew over this many samples in a row is WARN.
    warn_samples: int = 3
    # Only the groups whose id starts with this (empty: every group).
    group_prefix: str = ""
    metrics_port: int = 19465


class Settings(BaseSettings):
    """Everything the platform can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="COSMIC_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    state_dir: Path = Field(default_factory=_default_state_dir)
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    startup_timeout_s: float = 90.0
    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    postgres: PostgresSettings = PostgresSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    connectors: ConnectorSettings = ConnectorSettings()
    physics: PhysicsSettings = PhysicsSettings()
    living: LivingSettings = LivingSettings()
    live_metrics: LiveMetricsSettings = LiveMetricsSettings()
    spark: SparkSettings = SparkSettings()
    gateway: GatewaySettings = GatewaySettings()
    security: SecuritySettings = SecuritySettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    tracing: TracingSettings = TracingSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    lag: LagSettings = LagSettings()
    # None is replaced by <state_dir>/lake when the settings are built.
    lake_dir: Path = Field(default=None, validate_default=True)

    @field_validator("lake_dir", mode="before")
    @classmethod
    def _default_lake_dir(cls, value: Any, info: ValidationInfo) -> Any:
        return Path(info.data["state_dir"]) / "lake" if value is None else value

    @model_validator(mode="after")
    def _sections_know_the_state_dir(self) -> Settings:
        return _bind_sections(self)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("COSMIC_CONFIG", "cosmic.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> Settings:
        # A section handed in by the update (built on its own) reads its passwords from
        # the copy's state folder; sections carried over keep theirs, so a private
        # PostgreSQL in a test's folder sits beside the stack's Kafka credentials.
        return _bind_sections(super().model_copy(update=update, deep=deep))

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some top-level fields replaced (settings are frozen); a new section
        finds its passwords under this state folder, as a section read from the
        environment does."""
        return _bind_sections(self.model_copy(update=changes))

    def as_identity(self, identity: str) -> Settings:
        """These settings for a process that is Kafka user ``identity`` (cosmic/acls.py).

        Its password is the one the stack generated for it, never this process's own.
        """
        kafka = self.kafka.model_copy(update={"identity": identity, "sasl_password": None})
        return self.with_overrides(kafka=kafka)


def _bind_sections(settings: Settings) -> Settings:
    """Point the password lookup of every section that has none at ``settings.state_dir``.

    Such a section is copied first: the object may be shared with other settings.
    """
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, _Section) and value._state_dir is None:
            value = value.model_copy()
            value._state_dir = settings.state_dir
            object.__setattr__(settings, name, value)  # frozen: this is construction
    return settings


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def child_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process that must see exactly ``settings``.

    The one way settings reach another process (Faust workers, jobs, spark-submit's
    driver, test subprocesses): every field as the ``COSMIC_*`` variable that sets
    it, over ``base`` (default: this process's environment) without its own
    ``COSMIC_*`` variables, so nothing stale leaks through. Environment variables
    outrank ``cosmic.toml``, so the child's file cannot disagree either. Secrets are
    included: the environment of a process is readable by its user only.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("COSMIC_")}

    def walk(prefix: str, model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            key = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                walk(f"{key}__", value)
            elif value is not None:
                env[key] = _env_value(value)

    walk("COSMIC_", settings)
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
