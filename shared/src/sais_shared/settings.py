"""Settings read from the environment (prefix ``SAIS_``), never at import time.

Secrets come from files (``SAIS_KEK_FILE``) or, for development, an environment variable.
"""

from __future__ import annotations

import base64
import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError, MissingKeyEncryptionKeyError


class CommonSettings(BaseSettings):
    """What every service needs: where Kafka and PostgreSQL are, and the key-encryption key."""

    # An empty SAIS_X is no setting at all (compose passes `${SAIS_X:-}` through as "").
    model_config = SettingsConfigDict(env_prefix="SAIS_", extra="ignore", env_ignore_empty=True, populate_by_name=True)

    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers")
    kafka_security_protocol: Literal["SASL_SSL", "PLAINTEXT"] = Field(
        "SASL_SSL",
        description="SASL_SSL: TLS, and SCRAM-SHA-512 as the service's own Kafka user sais-<service> "
        "(password in the file kafka-sais-<service> of SAIS_CREDENTIALS_DIR). PLAINTEXT only for a development "
        "broker without authentication",
    )
    kafka_ca_file: Path | None = Field(
        None,
        description="CA certificate(s) the Kafka broker's TLS certificate must chain to (the system's CAs when unset)",
    )
    kafka_heartbeat_interval_ms: int = Field(
        3000,
        ge=100,
        le=10_000,
        description="How often each consumer tells its group it is alive (aiokafka's default 3000). A rebalance "
        "reaches a member at its next heartbeat, so a service whose consumers share a group starts and rejoins "
        "faster with a shorter one",
    )
    kafka_max_poll_interval_ms: int = Field(
        300_000,
        ge=10_000,
        le=3_600_000,
        description="How long one batch may take before its consumer is taken out of the group (aiokafka's "
        "max_poll_interval_ms); that consumer then stops, and /healthz fails. Raise it where one batch "
        "releases a very large extract (docs/runbook.md)",
    )
    kafka_linger_ms: int = Field(
        20,
        ge=0,
        le=1000,
        description="How long a producer waits to fill a batch before it sends it (aiokafka's linger_ms). Longer "
        "makes fewer, fuller batches for the broker to write, at the cost of latency; 20 ms took a quarter off "
        "the broker's CPU here (docs/performance.md)",
    )
    kafka_max_batch_bytes: int = Field(
        256 * 1024,
        ge=16 * 1024,
        le=1 << 20,
        description="The largest batch a producer sends to one partition (aiokafka's max_batch_size); stays "
        "under the broker's message.max.bytes (1 MiB)",
    )
    kafka_fetch_max_bytes: int = Field(
        1 << 20,
        ge=1 << 20,
        le=100 << 20,
        description="The most a consumer asks the broker for in one fetch (aiokafka's fetch_max_bytes; its default "
        "is 50 MiB). What a consumer has fetched and not yet handled is held in memory: with aiokafka's "
        "defaults a service's memory grew with the size of the extract until that buffer was full "
        "(docs/performance.md)",
    )
    kafka_partition_fetch_bytes: int = Field(
        256 * 1024,
        ge=64 * 1024,
        le=16 << 20,
        description="The most a consumer takes from one partition in one fetch (aiokafka's max_partition_fetch_bytes; "
        "its default is 1 MiB)",
    )
    kafka_fetch_max_wait_ms: int = Field(
        2000,
        ge=10,
        le=30_000,
        description="How long the broker holds a consumer's fetch open when there is nothing to read (aiokafka's "
        "fetch_max_wait_ms; its default is 500). A fetch returns as soon as a record comes, so a longer wait "
        "costs no latency; it only makes the idle consumers ask less often (docs/performance.md)",
    )
    kafka_batch_records: int = Field(
        1000,
        ge=1,
        le=20_000,
        description="The most records a service's consumer takes in one batch, worked in one transaction (a "
        "consumer with its own size keeps it: ingest's inbound extracts, retention's deletion requests)",
    )
    kafka_admin_user: str = Field("admin", description="Kafka administrator (`sais kafka setup`, tools)")
    kafka_admin_password_file: Path | None = Field(
        None, description="File holding the Kafka administrator's password (administrative commands only)"
    )
    kafka_publisher_byte_rate: int = Field(
        10 << 20,
        ge=1024,
        description="Bytes per second the upstream publishers' Kafka user may produce (a broker quota, set by "
        "`sais kafka setup` and in its Strimzi KafkaUser): 10 MiB/s sends a county's extract in seconds and "
        "England's in minutes, and bounds what anyone holding that login can push onto the inbound topic",
    )
    topic_prefix: str = Field("sais", description="Prefix of every topic name")
    topic_partitions: int = Field(3, ge=1, description="Partitions of each topic `sais kafka setup` creates")
    topic_replication_factor: int = Field(1, ge=1, description="Replicas of each topic `sais kafka setup` creates")
    metrics_interval_s: float = Field(
        15.0,
        gt=0,
        description="How often a service samples its consumer group's lag (and other gauges read from state)",
    )
    topic_retention_days: int = Field(
        120,
        ge=1,
        description="Backstop retention of the topics `sais kafka setup` creates, the inbound topic aside "
        "(7 days); crypto-shredding is what deletes readable data",
    )
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:15432/sais?sslmode=verify-full",
        description="Where PostgreSQL is (host, port, database, TLS). With SAIS_CREDENTIALS_DIR set, each service "
        "connects as its own role (sais_<service>) and only administrative commands (`sais db migrate`, "
        "`sais protocol load`, `sais audit`, KEK rotation) use the user named here",
    )
    database_url_file: Path | None = Field(
        None,
        description="File holding SAIS_DATABASE_URL (for a URL that carries a password: the administrator's, "
        "mounted from a secret); read at start, and wins over SAIS_DATABASE_URL",
    )
    credentials_dir: Path | None = Field(
        None,
        description="Folder of per-service secrets: postgres-sais_<service> and kafka-sais-<service> hold "
        "that service's PostgreSQL and Kafka passwords (mount only the running service's own)",
    )
    kek_file: Path | None = Field(None, description="File holding the base64 key-encryption key")
    kek: SecretStr | None = Field(None, description="base64 key-encryption key (dev only)")
    kek_id: str = Field("kek-1", description="Identifier of the key-encryption key in force")
    kek_retired_dir: Path | None = Field(
        None,
        description="Folder of retired key-encryption keys, one <kek-id>.b64 each: they open data keys wrapped "
        "before a rotation, never wrap new ones (docs/runbook.md, Rotating the key-encryption key)",
    )
    index_key_file: Path | None = Field(
        None, description="base64 blind-index key, pinned so that KEK rotation keeps match keys stable"
    )
    http_host: str = Field("127.0.0.1", description="Address of /healthz, /readyz, /metrics (0.0.0.0 in a pod)")
    http_port: int = Field(8080, description="Port of /healthz, /readyz, /metrics")
    startup_timeout_s: float = Field(
        0.0,
        description="A service started while Kafka or PostgreSQL is away retries, with backoff, for this long "
        "before it gives up (exit 3); 0: for as long as it takes",
    )
    startup_grace_s: float = Field(
        180.0,
        description="/healthz fails when the service has not finished starting (consumers running) this long "
        "after its servers answered, so that an orchestrator restarts it",
    )
    exit_when_unhealthy_s: float = Field(
        0.0,
        description="Stop the service (SIGTERM) once /healthz has failed this long, for orchestrators that "
        "restart a process that exits but not one that is unhealthy (compose); 0: never",
    )
    log_level: str = Field("INFO", description="Least level of the JSON log lines: DEBUG, INFO, WARNING, ERROR")
    log_format: str = Field(
        "json",
        description="json or console: the services' log lines, on stdout. `sais` commands write none unless "
        "asked with --log-format (or SAIS_CLI_LOG_FORMAT), to stderr",
    )
    as_of: date | None = Field(
        None, description="Business date override (demo, tests; development mode only); wall clock when unset"
    )
    dev_mode: bool = Field(
        False,
        description="Development mode: allows SAIS_KEK, SAIS_AS_OF and development certificates. "
        "Never set in production",
    )
    protocol_refresh_s: float = Field(30.0, description="How often services re-read the protocol in force")
    protocol_file: Path | None = Field(
        None,
        description="Information Sharing Protocol file that `sais db migrate` puts in force when no version "
        "is (the bundled example in development mode). Never read by the services or other commands: they "
        "enforce the version in the registry (`sais protocol load FILE` to change it)",
    )

    def database_login(self, service: str) -> dict[str, str]:
        """asyncpg connection arguments for one service: its own role (SAIS_CREDENTIALS_DIR). Only in
        development mode may a service fall back to SAIS_DATABASE_URL's user."""
        if self.credentials_dir is None:
            if not self.dev_mode:
                raise ConfigurationError(
                    f"the {service} service connects as its own role {service_principal(service)}: set "
                    "SAIS_CREDENTIALS_DIR to the folder holding its password file (SAIS_DATABASE_URL's user is the "
                    "administrator's, for `sais db migrate` and other administrative commands only)"
                )
            return {"dsn": self.database_url}
        role = service_principal(service)
        return {
            "dsn": self.database_url,
            "user": role,
            "password": read_secret(self.credentials_dir / f"postgres-{role}", "SAIS_CREDENTIALS_DIR"),
        }

    def kafka_login(self, service: str | None) -> dict[str, Any]:
        """aiokafka connection arguments as one service's Kafka user, or the administrator (None)."""
        base: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap}
        if self.kafka_security_protocol == "PLAINTEXT":
            return base
        user, password = self._kafka_credentials(service)
        from aiokafka.helpers import create_ssl_context

        return {
            **base,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": user,
            "sasl_plain_password": password,
            "ssl_context": create_ssl_context(cafile=str(self.kafka_ca_file) if self.kafka_ca_file else None),
        }

    def kafka_security(self, service: str | None) -> Any:
        """The same login for FastStream's KafkaBroker (None on a PLAINTEXT development broker)."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return None
        from faststream.security import SASLScram512

        login = self.kafka_login(service)
        return SASLScram512(
            username=login["sasl_plain_username"],
            password=login["sasl_plain_password"],
            ssl_context=login["ssl_context"],
            use_ssl=True,
        )

    def _kafka_credentials(self, service: str | None) -> tuple[str, str]:
        if service is None:
            if self.kafka_admin_password_file is None:
                raise ConfigurationError("this command administers Kafka: set SAIS_KAFKA_ADMIN_PASSWORD_FILE")
            return self.kafka_admin_user, read_secret(self.kafka_admin_password_file, "SAIS_KAFKA_ADMIN_PASSWORD_FILE")
        if self.credentials_dir is None:
            raise ConfigurationError(
                "Kafka needs a login (SAIS_KAFKA_SECURITY_PROTOCOL=SASL_SSL): set "
                "SAIS_CREDENTIALS_DIR to the folder holding kafka-sais-<service>"
            )
        user = kafka_user(service)
        return user, read_secret(self.credentials_dir / f"kafka-{user}", "SAIS_CREDENTIALS_DIR")

    def index_key_bytes(self) -> bytes | None:
        return read_key_file(self.index_key_file, "SAIS_INDEX_KEY_FILE") if self.index_key_file else None

    @model_validator(mode="after")
    def _database_url_from_file(self) -> CommonSettings:
        if self.database_url_file is not None:
            self.database_url = read_secret(self.database_url_file, "SAIS_DATABASE_URL_FILE")
        return self

    @model_validator(mode="after")
    def _consumer_groups(self) -> CommonSettings:
        """A service's consumer group defaults to <prefix>-<service>: the name its Kafka ACLs allow and
        `sais kafka lag` watches, whatever the prefix."""
        for name in type(self).model_fields:
            if name.endswith("_group_id") and getattr(self, name) is None:
                setattr(self, name, consumer_group(name.removesuffix("_group_id"), self.topic_prefix))
        return self

    def group_id_of(self, service: str) -> str:
        """The consumer group ``service`` runs in (SAIS_<SERVICE>_GROUP_ID, by default <prefix>-<service>)."""
        return getattr(self, f"{service}_group_id", None) or consumer_group(service, self.topic_prefix)

    @model_validator(mode="after")
    def _development_only(self) -> CommonSettings:
        if self.dev_mode:
            return self
        if self.as_of is not None:
            raise ConfigurationError(
                "SAIS_AS_OF moves the business date and is for development and tests only; "
                "unset it, or set SAIS_DEV_MODE=true on a development machine"
            )
        if self.kafka_security_protocol == "PLAINTEXT":
            raise ConfigurationError(
                "SAIS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT sends pupils' events unencrypted to a broker that asks no "
                "one's name: it is for a development broker only (SAIS_DEV_MODE=true); use SASL_SSL"
            )
        sslmode = _dsn_parameter(self.database_url, "sslmode") or os.environ.get("PGSSLMODE")
        if sslmode != "verify-full":
            raise ConfigurationError(
                f"SAIS_DATABASE_URL has sslmode={sslmode or 'unset'}: outside development mode the database's "
                "certificate and name must be checked (add sslmode=verify-full, and sslrootcert=<CA file> "
                "unless the system's CAs sign it)"
            )
        return self

    def key_encryption_key_bytes(self) -> bytes:
        """The 32-byte KEK, or a clear error when it is missing or malformed."""
        if self.kek_file is not None:
            return read_key_file(self.kek_file, "SAIS_KEK_FILE")
        elif self.kek is not None:
            if not self.dev_mode:
                raise ConfigurationError(
                    "SAIS_KEK puts the key-encryption key in the environment, which other "
                    "processes and crash dumps can read: use SAIS_KEK_FILE (SAIS_KEK is "
                    "accepted only with SAIS_DEV_MODE=true)"
                )
            raw = self.kek.get_secret_value().strip()
        else:
            raise MissingKeyEncryptionKeyError(
                "no key-encryption key: set SAIS_KEK_FILE to a file holding 32 random bytes "
                "in base64 (`sais keys new-kek > kek.b64`)"
            )
        return decode_key(raw, "the key-encryption key")

    def retired_keks(self) -> dict[str, bytes]:
        """The retired KEKs by id (SAIS_KEK_RETIRED_DIR: <kek-id>.b64 each); none when unset."""
        if self.kek_retired_dir is None:
            return {}
        if not self.kek_retired_dir.is_dir():
            raise ConfigurationError(f"SAIS_KEK_RETIRED_DIR {self.kek_retired_dir} is not a folder")
        found = {
            p.name.removesuffix(".b64"): read_key_file(p, "SAIS_KEK_RETIRED_DIR")
            for p in sorted(self.kek_retired_dir.glob("*.b64"))
        }
        if found and self.index_key_file is None:
            raise ConfigurationError(
                "retired KEKs without a pinned blind-index key: matching would change with the KEK; set "
                "SAIS_INDEX_KEY_FILE (`sais keys export-index-key`, with the original KEK in force) first"
            )
        return found

    def key_ring(self):
        """The KEK in force with the retired ones: what every service wraps and unwraps data keys with."""
        from .crypto import KeyEncryptionKey

        return KeyEncryptionKey(
            self.key_encryption_key_bytes(), self.kek_id, self.index_key_bytes(), self.retired_keks()
        )


def _dsn_parameter(dsn: str, name: str) -> str | None:
    """A query parameter of a PostgreSQL URL (the last one given wins, as libpq reads them)."""
    from urllib.parse import parse_qs, urlsplit

    values = parse_qs(urlsplit(dsn).query).get(name)
    return values[-1] if values else None


SERVICES = ("ingest", "eligibility", "delivery", "retention")


def service_http_port(service: str, default: int) -> Any:
    """A service's HTTP port: SAIS_<SERVICE>_HTTP_PORT, else SAIS_HTTP_PORT, else its own default (so that
    the four services run side by side on one host, each where its own setting says)."""
    return Field(
        default,
        validation_alias=AliasChoices(f"SAIS_{service.upper()}_HTTP_PORT", "SAIS_HTTP_PORT"),
        description=f"Port of {service}'s /healthz, /readyz, /metrics (SAIS_{service.upper()}_HTTP_PORT wins "
        "over SAIS_HTTP_PORT)",
    )


def consumer_group(service: str, prefix: str) -> str:
    """A service's consumer group by default, and the prefix of every group its Kafka ACLs allow."""
    return f"{prefix}-{service}"


KAFKA_ADMIN = "admin"  # the Kafka administrator's user name in the development PKI


def service_principal(service: str) -> str:
    """The PostgreSQL role and Kafka user of a service (``sais_ingest`` …); ``publisher`` is an upstream system."""
    if service not in (*SERVICES, "publisher"):
        raise ConfigurationError(f"unknown service {service!r}")
    return f"sais_{service}"


def kafka_user(service: str) -> str:
    """A service's Kafka user (``sais-ingest`` …): a Kubernetes name, as Strimzi's KafkaUser needs."""
    return service_principal(service).replace("_", "-")


def read_secret(path: Path, setting: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the secret {path.name} in {setting} ({exc.strerror})") from None
    if not value:
        raise ConfigurationError(f"the secret {path.name} in {setting} is empty")
    return value


def read_key_file(path: Path, setting: str) -> bytes:
    try:
        raw = path.read_text().strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise MissingKeyEncryptionKeyError(f"cannot read {setting} {path}: {exc.strerror}") from None
    if mode & 0o077:
        structlog.get_logger("sais.settings").warning(
            "key_file.readable_by_others", setting=setting, mode=oct(mode & 0o777), fix=f"chmod 600 {path}"
        )
    return decode_key(raw, f"the key in {setting}")


def decode_key(raw: str, what: str) -> bytes:
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        raise ConfigurationError(f"{what} is not valid base64") from None
    if len(key) != 32:
        raise ConfigurationError(f"{what} must be 32 bytes, got {len(key)}")
    return key
