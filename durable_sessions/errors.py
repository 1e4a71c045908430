"""The one exception tree of durable-sessions.

Every error the library raises on purpose derives from :class:`DurableSessionsError`. Driver
errors (SQLAlchemy, aio-pika/aiormq, lxml) are translated at the adapter boundary with
``raise ... from e`` and never leak to callers::

    DurableSessionsError
    ├── DeclarationError (TypeError)        a contract, service or endpoint is declared wrongly
    │   ├── ContractError                   @contract / @operation rules
    │   ├── ServiceError                    @service rules (handlers, instancing, state model)
    │   └── BindingMismatch                 contract and binding cannot work together
    ├── ConfigurationError (ValueError)     settings or arguments that cannot be used
    │   ├── UnknownContract                 no endpoint serves that contract (here)
    │   ├── SessionsNotAllowed              the contract's messages are datagrams
    │   ├── SingletonInUse                  another worker serves that SINGLE service
    │   └── EncodeError                     an envelope its WS-RM version cannot express (wsrm)
    ├── IllegalTransition                   a session event not allowed in the current state
    ├── SessionError                        a request about one session was refused
    │   ├── SessionNotFound
    │   └── SessionNotOpen                  the session refuses messages (closing, closed, ...)
    │       ├── SessionAborted              the client aborted it (CommunicationObjectAborted)
    │       └── SessionFaulted              it faulted (CommunicationObjectFaultedException)
    ├── EndpointNotFound
    ├── AccessDenied                        the credential is valid but may not do this
    ├── KeyNotFound                         no API key has that name
    ├── KeyExists                           an API key of that name exists already
    ├── ListenerNotFaulted                  resuming a datagram listener that is not faulted
    ├── DeadLetterNotFound
    ├── ReplayRefused                       a dead letter cannot be replayed (again)
    ├── MessageNotFound
    ├── MessageRejected (ValueError)        a message is invalid and nothing was changed
    │   ├── UnknownOperation
    │   ├── InvalidArguments
    │   ├── NotInitiating                   first message of a session is not initiating
    │   ├── TerminatingOperationCalled      a message after the terminating operation
    │   ├── MessageIdConflict               the message id is already used elsewhere
    │   ├── MalformedMessage                a broker message body that cannot be decoded (wire)
    │   └── EnvelopeRejected                an inbound SOAP envelope; .fault is the reply (wsrm)
    ├── SequenceError                       the WS-RM engine refused a request (wsrm)
    │   ├── SequenceNotOpen                 the sequence is being created, closing or over
    │   ├── TransferWindowFull              no room in the window or the peer's buffer now
    │   └── SequenceExhausted               every message number up to 2^63-1 was used
    ├── InvalidSnapshot (ValueError)        stored sequence state cannot be restored (wsrm)
    ├── OperationFailed                     the service raised while applying a two-way call
    ├── StoreError                          the SQL store (or its in-memory twin) refused
    │   ├── ConcurrencyConflict             optimistic version check failed
    │   ├── UniquenessViolation             a unique key (seq, message id, ...) already exists
    │   └── StoreUnavailable                the database cannot be reached
    └── BrokerError                         the message broker refused or cannot be reached
        └── BrokerUnavailable
"""

from __future__ import annotations


class DurableSessionsError(Exception):
    """Base class of every error raised by durable-sessions."""


class DeclarationError(DurableSessionsError, TypeError):
    """A contract, service or endpoint declaration breaks a rule; the message says how to fix it."""


class ContractError(DeclarationError):
    """A ``@contract`` or ``@operation`` declaration breaks WCF's contract rules."""


class ServiceError(DeclarationError):
    """A ``@service`` declaration does not match its contract or its instancing."""


class BindingMismatch(DeclarationError):
    """A contract's session mode cannot be carried by the chosen binding."""


class ConfigurationError(DurableSessionsError, ValueError):
    """A setting or argument has a value that cannot be used."""


class UnknownContract(ConfigurationError):
    """No endpoint known to this process serves the contract."""


class SessionsNotAllowed(ConfigurationError):
    """A session was asked for on a contract or endpoint that carries datagrams only."""


class SingletonInUse(ConfigurationError):
    """Another worker process holds the lease of a SINGLE service: one instance, one worker."""


class IllegalTransition(DurableSessionsError):
    """A session lifecycle event is not allowed in the session's current state."""

    def __init__(self, state: str, event: str) -> None:
        self.state = state
        self.event = event
        super().__init__(f"cannot {event} a session that is {state}")


class SessionError(DurableSessionsError):
    """A request about one session was refused."""

    def __init__(self, session_id: str, message: str) -> None:
        self.session_id = session_id
        super().__init__(message)


class SessionNotFound(SessionError):
    """No session has this id."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id, f"no session with id {session_id!r}")


class SessionNotOpen(SessionError):
    """The session is closing, closed, faulted, terminated or expired and refuses messages."""

    def __init__(self, session_id: str, state: str) -> None:
        self.state = state
        super().__init__(
            session_id, f"session {session_id!r} is {state} and accepts no more messages"
        )


class SessionAborted(SessionNotOpen):
    """The client aborted its session: WCF's ``CommunicationObjectAbortedException``."""

    def __init__(self, session_id: str) -> None:
        self.state = "aborted"
        SessionError.__init__(
            self,
            session_id,
            f"The session {session_id!r} cannot be used for communication because it has been "
            "Aborted.",
        )


class SessionFaulted(SessionNotOpen):
    """The session faulted: WCF's ``CommunicationObjectFaultedException``; ``reason`` says why."""

    def __init__(self, session_id: str, reason: str | None = None) -> None:
        self.state = "faulted"
        self.reason = reason
        SessionError.__init__(
            self,
            session_id,
            f"The session {session_id!r} cannot be used for communication because it is in the "
            f"Faulted state{f': {reason}' if reason else '.'}",
        )


class EndpointNotFound(DurableSessionsError):
    """No endpoint of that name is served here."""


class AccessDenied(DurableSessionsError):
    """The caller is known, but its role, scope or session does not allow this request."""


class KeyNotFound(DurableSessionsError):
    """No API key has this name."""


class KeyExists(DurableSessionsError):
    """An API key of this name exists already (revoke it first to reuse the name)."""


class ListenerNotFaulted(DurableSessionsError):
    """Resuming an endpoint's datagram listener that is not faulted."""


class DeadLetterNotFound(DurableSessionsError):
    """No dead letter has this id."""


class ReplayRefused(DurableSessionsError):
    """A dead letter cannot be replayed: already replayed, or nothing to replay."""


class MessageNotFound(DurableSessionsError):
    """No message has this id (or this seq in its session)."""


class MessageRejected(DurableSessionsError, ValueError):
    """A message is invalid; it was not stored or sent."""


class UnknownOperation(MessageRejected):
    """The contract has no operation of this name."""


class InvalidArguments(MessageRejected):
    """The arguments do not match the operation's parameters."""

    def __init__(self, message: str, errors: list[dict[str, object]] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message)


class NotInitiating(MessageRejected):
    """The first message of a session must call an initiating operation."""


class TerminatingOperationCalled(MessageRejected):
    """A terminating operation was already called in this session."""


class MessageIdConflict(MessageRejected):
    """The caller's message id is already used by a different message."""


class OperationFailed(DurableSessionsError):
    """The service raised while applying a call; carries the recorded error text."""

    def __init__(self, operation: str, error: str) -> None:
        self.operation = operation
        self.error = error
        super().__init__(f"operation {operation!r} failed: {error}")


class StoreError(DurableSessionsError):
    """The SQL store, or its in-memory twin, refused a change."""


class ConcurrencyConflict(StoreError):
    """A row changed since it was read: its version no longer matches."""


class UniquenessViolation(StoreError):
    """A row with the same unique key already exists."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the connection."""


class BrokerError(DurableSessionsError):
    """The message broker refused an operation."""


class BrokerUnavailable(BrokerError):
    """The message broker cannot be reached."""
