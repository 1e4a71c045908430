"""The SQL schema: typed SQLAlchemy models of sessions (state and send side), labels,
messages, outbox, dead letters, WS-RM sequences, leases, API keys, the nonces of signed
messages and workers' heartbeats.

Tables carry the ``ds_`` prefix so they can share a database with the application; constraint
names follow one convention so migrations are stable across SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from durable_sessions.model.access import Role
from durable_sessions.model.lifecycle import SessionState
from durable_sessions.model.records import DeadLetterReason, MessageStatus, SequenceRole
from durable_sessions.wsrm.messages import RMVersion

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone, so we add it)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass timezone-aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _enum(enum: type[StrEnum], name: str, length: int = 24) -> sa.Enum:
    return sa.Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda e: [member.value for member in e],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Declarative base holding the metadata and the naming convention."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


class SessionRow(Base):
    """A durable session's state: all of it but the send side (see ``SessionSendsRow``).

    ``expires_at`` is the session's deadline as the state's writer saw it; while messages sent
    since wait, the send side's holds instead.
    """

    __tablename__ = "ds_sessions"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    contract: Mapped[str] = mapped_column(sa.String(200))
    endpoint: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[SessionState] = mapped_column(_enum(SessionState, "session_state"))
    labels: Mapped[dict[str, Any]]
    last_applied_seq: Mapped[int] = mapped_column(sa.BigInteger)
    applied_count: Mapped[int] = mapped_column(sa.BigInteger)
    parked_count: Mapped[int] = mapped_column(sa.BigInteger)
    duplicate_count: Mapped[int] = mapped_column(sa.BigInteger)
    dead_count: Mapped[int] = mapped_column(sa.BigInteger)
    instance_state: Mapped[Any | None] = mapped_column(JSONType)
    inactivity_timeout_s: Mapped[float] = mapped_column(sa.Float)
    ttl_s: Mapped[float | None] = mapped_column(sa.Float)
    created_at: Mapped[datetime]
    last_activity_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    close_requested: Mapped[bool] = mapped_column(sa.Boolean)
    progress_at: Mapped[datetime | None]
    fault_seq: Mapped[int | None] = mapped_column(sa.BigInteger)
    fault_reason: Mapped[str | None] = mapped_column(sa.Text)
    end_reason: Mapped[str | None] = mapped_column(sa.Text)
    opened_by: Mapped[str | None] = mapped_column(sa.String(64))
    token_digest: Mapped[str | None] = mapped_column(sa.String(64))
    version: Mapped[int] = mapped_column(sa.Integer)

    __table_args__ = (
        sa.Index(None, "state", "id"),
        sa.Index(None, "contract", "id"),
    )


class SessionSendsRow(Base):
    """A session's send side, a row of its own so senders and appliers lock different rows.

    ``expires_at`` is the end of the time to live: how long messages sent may wait.
    """

    __tablename__ = "ds_session_sends"

    session_id: Mapped[str] = mapped_column(
        sa.ForeignKey("ds_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    last_sent_seq: Mapped[int] = mapped_column(sa.BigInteger)
    terminating_seq: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_sent_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    stall_check_at: Mapped[datetime | None] = mapped_column(index=True)


class SessionLabelRow(Base):
    """One label of a session, kept apart so label filters use an index."""

    __tablename__ = "ds_session_labels"

    session_id: Mapped[str] = mapped_column(
        sa.ForeignKey("ds_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(200))

    __table_args__ = (sa.Index(None, "key", "value", "session_id"),)


class MessageRow(Base):
    """A message: one operation call, in a session or a datagram (the inbox)."""

    __tablename__ = "ds_messages"

    message_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("ds_sessions.id", ondelete="CASCADE")
    )
    seq: Mapped[int | None] = mapped_column(sa.BigInteger)
    endpoint: Mapped[str] = mapped_column(sa.String(200))
    contract: Mapped[str] = mapped_column(sa.String(200))
    operation: Mapped[str] = mapped_column(sa.String(200))
    args: Mapped[dict[str, Any]]
    status: Mapped[MessageStatus] = mapped_column(_enum(MessageStatus, "message_status"))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    result: Mapped[Any | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]
    applied_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)

    __table_args__ = (sa.UniqueConstraint("session_id", "seq"),)


class OutboxRow(Base):
    """A message waiting for the relay to publish it."""

    __tablename__ = "ds_outbox"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    exchange: Mapped[str] = mapped_column(sa.String(255))
    routing_key: Mapped[str] = mapped_column(sa.String(255))
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    headers: Mapped[dict[str, Any]]
    message_id: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(sa.String(100))
    claimed_until: Mapped[datetime | None]


class DeadLetterRow(Base):
    """A message that could not be delivered or applied."""

    __tablename__ = "ds_dead_letters"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    message_id: Mapped[str] = mapped_column(sa.String(200), index=True)
    session_id: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    seq: Mapped[int | None] = mapped_column(sa.BigInteger)
    endpoint: Mapped[str] = mapped_column(sa.String(200))
    contract: Mapped[str] = mapped_column(sa.String(200))
    operation: Mapped[str] = mapped_column(sa.String(200))
    args: Mapped[dict[str, Any]]
    reason: Mapped[DeadLetterReason] = mapped_column(
        _enum(DeadLetterReason, "dead_letter_reason"), index=True
    )
    detail: Mapped[str] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime]
    replayed_at: Mapped[datetime | None]
    replay_message_id: Mapped[str | None] = mapped_column(sa.String(200))


class ListenerFaultRow(Base):
    """An endpoint whose datagram listener stopped at a poison message."""

    __tablename__ = "ds_listener_faults"

    endpoint: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    message_id: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str] = mapped_column(sa.Text)
    faulted_at: Mapped[datetime]


class SequenceRow(Base):
    """A WS-RM sequence, source or destination; ``state`` is the engine's snapshot."""

    __tablename__ = "ds_sequences"

    identifier: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    role: Mapped[SequenceRole] = mapped_column(_enum(SequenceRole, "sequence_role"))
    rm_version: Mapped[RMVersion] = mapped_column(_enum(RMVersion, "rm_version", length=64))
    endpoint: Mapped[str] = mapped_column(sa.String(200))
    session_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("ds_sessions.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[dict[str, Any]]
    pending: Mapped[bool] = mapped_column(sa.Boolean)
    ended: Mapped[bool] = mapped_column(sa.Boolean)
    create_message_id: Mapped[str | None] = mapped_column(sa.String(200))
    wake_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(sa.Integer)

    __table_args__ = (
        sa.Index(None, "endpoint", "create_message_id"),
        sa.Index(None, "endpoint", "role", "pending"),
        sa.Index(None, "role", "ended", "wake_at"),
    )


class LeaseRow(Base):
    """A named lease, such as the one a worker serving a SINGLE service holds."""

    __tablename__ = "ds_leases"

    name: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(255))
    expires_at: Mapped[datetime]


class KeyRow(Base):
    """An API key: its name, role and scope, its prefix and the SHA-256 of it (not the key)."""

    __tablename__ = "ds_api_keys"

    name: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "key_role", 16))
    prefix: Mapped[str] = mapped_column(sa.String(32), unique=True)
    digest: Mapped[str] = mapped_column(sa.String(64))
    contract: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]


class NonceRow(Base):
    """A nonce of a signed message, seen for a session at time ``t`` (unix seconds)."""

    __tablename__ = "ds_session_nonces"

    session_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    nonce: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    t: Mapped[int] = mapped_column(sa.BigInteger)


class WorkerRow(Base):
    """A worker process's heartbeat: who it is, what it serves, when it was last seen."""

    __tablename__ = "ds_workers"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int] = mapped_column(sa.Integer)
    endpoints: Mapped[dict[str, Any]]
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)


sessions = cast(sa.Table, SessionRow.__table__)
session_sends = cast(sa.Table, SessionSendsRow.__table__)
session_labels = cast(sa.Table, SessionLabelRow.__table__)
messages = cast(sa.Table, MessageRow.__table__)
outbox = cast(sa.Table, OutboxRow.__table__)
dead_letters = cast(sa.Table, DeadLetterRow.__table__)
listener_faults = cast(sa.Table, ListenerFaultRow.__table__)
sequences = cast(sa.Table, SequenceRow.__table__)
leases = cast(sa.Table, LeaseRow.__table__)
keys = cast(sa.Table, KeyRow.__table__)
nonces = cast(sa.Table, NonceRow.__table__)
workers = cast(sa.Table, WorkerRow.__table__)
