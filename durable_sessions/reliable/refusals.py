"""The SOAP fault that answers a call the endpoint refuses, with WCF's dispatcher codes.

Both transports of the binding (the SOAP route over HTTP, the WS-RM queue over AMQP) answer a
refused call with :func:`refusal`:

- an operation the contract does not have, or a non-initiating one as a session's first call:
  ActionNotSupported (WS-Addressing), "The message with Action '...' cannot be processed at the
  receiver, due to a ContractFilter mismatch at the EndpointDispatcher..." (WCF's
  ``SFxNoEndpointMatchingContract``);
- a call after the session's terminating operation: SessionTerminated (WCF's dispatcher
  namespace and fault action) with ``SFxChannelTerminated0``; a call to a session that ended
  otherwise gets the same code with the reason it ended;
- anything else the call got wrong (its arguments, say): a Sender fault saying what.
"""

from __future__ import annotations

from durable_sessions.errors import (
    NotInitiating,
    SessionNotOpen,
    TerminatingOperationCalled,
    UnknownOperation,
)
from durable_sessions.wsrm import faults
from durable_sessions.wsrm.messages import Envelope, Fault, FaultCode, RMVersion


def refusal_fault(error: Exception, action: str) -> Fault:
    """The fault for ``error``, raised by a call that came with ``action``."""
    if isinstance(error, UnknownOperation | NotInitiating):
        return faults.action_not_supported(action)
    if isinstance(error, TerminatingOperationCalled):
        return faults.session_terminated()
    if isinstance(error, SessionNotOpen):
        return faults.session_terminated(str(error))
    return Fault(FaultCode.SENDER, str(error))


def refusal(error: Exception, request: Envelope, version: RMVersion) -> Envelope:
    """The envelope that answers ``request``, refused with ``error``."""
    fault = refusal_fault(error, request.action)
    return faults.fault_envelope(fault, version, relates_to=request.message_id)
