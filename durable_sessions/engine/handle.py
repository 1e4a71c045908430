"""The client's handle on one session: WCF's communication states and the rules of a call.

Both clients, the queued one (:mod:`~durable_sessions.engine.client`) and the reliable ones
(:mod:`~durable_sessions.reliable.client`), check each call here before they send anything,
as a WCF channel does:

- the first call of a session must be initiating (WCF's ``SFxNonInitiatingOperation1``);
- nothing follows a terminating call (``SFxTerminatingOperationAlreadyCalled1``);
- a closed handle refuses every call (:class:`~durable_sessions.errors.SessionNotOpen`), an
  aborted one says so (:class:`~durable_sessions.errors.SessionAborted`), and so does a
  faulted one (:class:`~durable_sessions.errors.SessionFaulted`).

Closing a faulted handle aborts it and raises :class:`~durable_sessions.errors.SessionFaulted`,
as ``Close()`` on a faulted WCF channel raises ``CommunicationObjectFaultedException``.
"""

from __future__ import annotations

from enum import StrEnum

from durable_sessions.engine.sending import not_initiating_text
from durable_sessions.errors import (
    NotInitiating,
    SessionAborted,
    SessionFaulted,
    SessionNotOpen,
    TerminatingOperationCalled,
)
from durable_sessions.model.contracts import ContractSpec, OperationSpec


class HandleState(StrEnum):
    """Where a client's handle is in its life (WCF's ``CommunicationState``)."""

    CREATED = "created"
    OPENED = "opened"
    CLOSED = "closed"
    ABORTED = "aborted"
    FAULTED = "faulted"


class SessionHandle:
    """The state of one session as its client sees it, and the check of every call."""

    def __init__(self, contract: ContractSpec) -> None:
        self.contract = contract
        self.state = HandleState.CREATED
        self.session_id = "-"
        self.sent = 0
        self.terminated_by: str | None = None
        self.fault: str | None = None

    def opened(self, session_id: str, *, sent: int = 0) -> None:
        """The session ``session_id`` is open and has carried ``sent`` calls already."""
        self.state = HandleState.OPENED
        self.session_id = session_id
        self.sent = sent

    def check(self, op: OperationSpec) -> None:
        """Refuse a call of ``op`` that must not be sent now; nothing is sent then."""
        if self.state is HandleState.ABORTED:
            raise SessionAborted(self.session_id)
        if self.state is HandleState.FAULTED:
            raise SessionFaulted(self.session_id, self.fault)
        if self.terminated_by is not None:
            raise TerminatingOperationCalled(
                "This channel cannot send any more messages because IsTerminating operation "
                f"{self.terminated_by!r} has already been called."
            )
        if self.state is not HandleState.OPENED:
            raise SessionNotOpen(self.session_id, self.state.value)
        if self.sent == 0 and not op.initiating:
            raise NotInitiating(not_initiating_text(op, self.contract))

    def called(self, op: OperationSpec) -> None:
        """A call of ``op`` was sent."""
        self.sent += 1
        if op.terminating:
            self.terminated_by = op.name

    def faulted(self, reason: str) -> None:
        """The session cannot go on (unless it is already over)."""
        if self.state in (HandleState.CREATED, HandleState.OPENED):
            self.state = HandleState.FAULTED
            self.fault = reason

    def closing(self) -> bool:
        """Whether a close has anything to do: True while the handle is open.

        A faulted handle is aborted and :class:`~durable_sessions.errors.SessionFaulted`
        raised; a handle never opened, closed or aborted has nothing to close.
        """
        if self.state is HandleState.FAULTED:
            self.state = HandleState.ABORTED
            raise SessionFaulted(self.session_id, self.fault)
        return self.state is HandleState.OPENED

    def closed(self) -> None:
        """The close is done: every later call is refused as closed."""
        self.state = HandleState.CLOSED

    def aborting(self) -> bool:
        """Begin an abort: True unless the handle was never opened or is already over."""
        if self.state in (HandleState.CREATED, HandleState.CLOSED, HandleState.ABORTED):
            return False
        self.state = HandleState.ABORTED
        return True
