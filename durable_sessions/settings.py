"""Typed settings, read from ``DS_*`` environment variables and passed explicitly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./durable-sessions.db"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


class Settings(BaseSettings):
    """Everything a durable-sessions process can be configured with.

    Every field reads from the environment variable ``DS_<FIELD NAME>``; nothing is global:
    build one ``Settings`` at start-up and hand it to the parts that need it.
    """

    model_config = SettingsConfigDict(env_prefix="DS_", frozen=True, extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the store; sqlite:// and postgresql:// get async drivers.",
    )
    broker_url: str = Field(DEFAULT_BROKER_URL, description="AMQP URL of RabbitMQ.")
    api_keys: SecretStr = Field(
        SecretStr(""), description="Comma-separated bearer keys accepted by the control plane."
    )
    api_keys_file: str = Field(
        ".ds/api-keys", description="Where `up` keeps generated API keys (mode 0600)."
    )
    session_secret: SecretStr = Field(
        SecretStr(""),
        description="Server secret the security session's keys are derived from (HKDF); "
        "the same in every control plane. Else the secret file.",
    )
    session_secret_file: str = Field(
        ".ds/session-secret",
        description="Where the server secret is generated once (mode 0600) when "
        "DS_SESSION_SECRET is unset.",
    )
    max_clock_skew_s: float = Field(
        300.0,
        gt=0,
        description="How far a signed message's time may be from the server's (WCF MaxClockSkew).",
    )
    api_url: str = Field(
        "http://127.0.0.1:8000", description="Control plane the inspection commands talk to."
    )
    api_key: SecretStr = Field(
        SecretStr(""), description="Bearer key the inspection commands send (else the key file)."
    )
    api_ca_file: str = Field(
        "",
        description="CA bundle the inspection commands verify an https:// control plane with "
        "(else the system's).",
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    tls_cert: str = Field(
        "", description="PEM certificate (chain) the control plane serves HTTPS with."
    )
    tls_key: str = Field("", description="PEM private key of DS_TLS_CERT.")
    broker_ca_file: str = Field(
        "",
        description="CA bundle an amqps:// broker's certificate is verified with (else the "
        "system's).",
    )
    services: str = Field(
        "durable_sessions.examples.calculator:CalculatorService",
        description="Comma-separated module:Service list served by `up` and `worker`, each "
        "optionally @endpoint, @endpoint:binding or @:binding; the same in every process.",
    )
    session_inactivity_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Idle time after which a session expires, counted only while nothing sent "
        "to it is pending (WCF receiveTimeout).",
    )
    session_ttl_s: float | None = Field(
        86400.0,
        gt=0,
        description="Longest life of a session and of its pending messages (NetMsmqBinding "
        "TimeToLive).",
    )
    session_queues: int = Field(
        4, ge=1, le=256, description="Session queues per endpoint; the same in every process."
    )
    reliable_inactivity_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Silence after which a WS-RM sequence ends, with its session (WCF's "
        "InactivityTimeout); the same in every process.",
    )
    reliable_sessions: str = Field(
        "",
        description="Reliable-session settings per endpoint, with WCF's names: "
        "'endpoint:Name=value,Name=value;other:...' (e.g. 'calculator:MaxTransferWindowSize=16'); "
        "the same in every process.",
    )
    receive_retry_count: int = Field(5, ge=0, description="Immediate retries of a failing message.")
    max_retry_cycles: int = Field(2, ge=0, description="Further retry cycles after a delay.")
    retry_cycle_delay_s: float = Field(1800.0, ge=0, description="Delay between retry cycles.")
    receive_error_handling: str = Field(
        "fault", description="What exhausted retries do: fault, drop, reject or move."
    )
    worker_batch_size: int = Field(256, ge=1, description="Most deliveries per transaction.")
    worker_batch_delay_s: float = Field(
        0.001, ge=0, description="Wait for a fuller batch after idling."
    )
    worker_sessions_per_batch: int = Field(
        128, ge=1, description="Most sessions per transaction; a fuller batch is split."
    )
    worker_prefetch: int = Field(512, ge=1, description="Unsettled deliveries per queue.")
    worker_max_concurrent_calls: int = Field(
        0,
        ge=0,
        description="Handler calls at once per worker (WCF MaxConcurrentCalls); 0 "
        "means 16 per CPU.",
    )
    worker_max_concurrent_sessions: int = Field(
        0,
        ge=0,
        description="Sessions served at once per worker (WCF MaxConcurrentSessions); "
        "0 means 100 per CPU.",
    )
    worker_max_concurrent_instances: int = Field(
        0,
        ge=0,
        description="Service instances alive at once per worker (WCF "
        "MaxConcurrentInstances); 0 means calls plus sessions.",
    )
    singleton_lease_s: float = Field(
        30.0,
        gt=0,
        description="Lease of the one worker serving a SINGLE service; a worker "
        "that replaces a crashed one waits for it to run out.",
    )
    sweep_interval_s: float = Field(1.0, gt=0, description="How often the sweeper runs.")
    outbox_poll_interval_s: float = Field(1.0, gt=0, description="How often relays poll.")
    outbox_lease_s: float = Field(30.0, gt=0, description="How long a relay holds its claim.")
    log_level: str = "INFO"

    @field_validator("receive_error_handling")
    @classmethod
    def _known_handling(cls, value: str) -> str:
        allowed = {"fault", "drop", "reject", "move"}
        if value.lower() not in allowed:
            raise ValueError(f"receive_error_handling must be one of {sorted(allowed)}")
        return value.lower()

    @field_validator("database_url")
    @classmethod
    def _use_async_driver(cls, url: str) -> str:
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise ValueError(f"not a database URL: {redact_url(url)!r}")
        return f"{_ASYNC_DRIVERS.get(scheme, scheme)}://{rest}"

    @field_validator("broker_url")
    @classmethod
    def _is_amqp(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in {"amqp", "amqps"}:
            raise ValueError(f"broker URL must start with amqp:// or amqps://, not {url[:16]!r}")
        if "no_verify_ssl" in parse_qs(parts.query, keep_blank_values=True):
            raise ValueError(
                "the broker URL turns certificate verification off (no_verify_ssl): give the "
                "broker's CA in DS_BROKER_CA_FILE instead"
            )
        return url

    def api_key_list(self) -> list[str]:
        """The configured API keys, without blanks."""
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    def service_paths(self) -> list[str]:
        """The ``module:Service[@endpoint[:binding]]`` entries of ``DS_SERVICES``."""
        return [s.strip() for s in self.services.split(",") if s.strip()]

    def with_reliable_sessions(self, entries: Sequence[str]) -> Settings:
        """These settings with ``entries`` (``endpoint:Name=value,...``, as given by
        ``--reliable-session``) added to ``reliable_sessions``."""
        if not entries:
            return self
        combined = ";".join(e for e in (self.reliable_sessions, *entries) if e.strip())
        return self.model_copy(update={"reliable_sessions": combined})

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            shown = redact_url(value) if name is not None and name.endswith("_url") else value
            yield name, shown
