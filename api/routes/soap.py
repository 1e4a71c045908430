"""``/v1/soap/{endpoint}``: WS-ReliableMessaging over HTTP into the endpoint's sessions.

One SOAP 1.2 envelope per POST (``application/soap+xml``; SOAP 1.1's ``text/xml`` is read too).
The answer (acknowledgement, protocol response, reply or fault) comes back on the response:
200 with an envelope, 202 with nothing, or a SOAP fault with 400 (the sender's fault), 404 (no
such endpoint), 413 (too large), 415 (not SOAP) or 500 (the receiver's fault).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response

from api.auth import needs
from api.deps import ControlPlane, Plane
from durable_sessions.errors import (
    ConfigurationError,
    MessageRejected,
    SessionError,
)
from durable_sessions.hosting.composition import reliable_settings
from durable_sessions.model.access import Permission, Principal, Role, allows
from durable_sessions.reliable.calls import CALL_FORMAT
from durable_sessions.reliable.host import ReliableSessionHost, named_sequences
from durable_sessions.wsrm.errors import EnvelopeRejected
from durable_sessions.wsrm.faults import fault_envelope
from durable_sessions.wsrm.messages import (
    AddressingFaultCode,
    Envelope,
    Fault,
    FaultCode,
    RMVersion,
)
from durable_sessions.wsrm.settings import ReliableSessionSettings
from durable_sessions.wsrm.xml import codec

router = APIRouter(tags=["reliable sessions"])

SOAP_MEDIA_TYPE = "application/soap+xml"
MAX_ENVELOPE_BYTES = 256 * 1024
"""The largest envelope accepted (WCF's default MaxReceivedMessageSize is 64 KiB)."""
DEFAULT_VERSION = ReliableSessionSettings().version
"""The WS-RM version of faults about envelopes whose version cannot be told."""
_ACCEPTED_TYPES = (SOAP_MEDIA_TYPE, "text/xml")


def _fault(fault: Fault, version: RMVersion | None, status: int) -> Response:
    body = codec.encode_fault(fault, version or DEFAULT_VERSION)
    return Response(body, status_code=status, media_type=f"{SOAP_MEDIA_TYPE}; charset=utf-8")


def _status(fault: Fault) -> int:
    # SOAP 1.2 HTTP binding: Sender faults are 400, every other fault 500.
    return 400 if fault.code is FaultCode.SENDER else 500


async def _read(request: Request) -> bytes | None:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_ENVELOPE_BYTES:
            return None
    return bytes(data)


@router.post(
    "/soap/{endpoint}",
    summary="Deliver a WS-ReliableMessaging envelope to an endpoint",
    response_class=Response,
    responses={
        200: {"content": {SOAP_MEDIA_TYPE: {}}, "description": "The answer envelope."},
        202: {"description": "Accepted; nothing to answer."},
    },
)
async def deliver(
    endpoint: str,
    request: Request,
    plane: Plane,
    caller: Annotated[Principal, needs(Permission.SEND)],
) -> Response:
    """Process one WS-RM envelope (February 2005 or 1.1) for ``endpoint``'s sessions.

    A sequence belongs to the key that created it: a sender's envelope about another key's
    sequence is refused (403, a Sender fault) before anything is read or stored.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in _ACCEPTED_TYPES:
        fault = Fault(FaultCode.SENDER, f"Send {SOAP_MEDIA_TYPE}, not {media_type or 'nothing'}.")
        return _fault(fault, None, 415)
    data = await _read(request)
    if data is None:
        fault = Fault(FaultCode.SENDER, f"The envelope exceeds {MAX_ENVELOPE_BYTES} bytes.")
        return _fault(fault, None, 413)
    try:
        inbound = codec.decode_message(data)
    except EnvelopeRejected as error:
        return _fault(error.fault, error.rm_version, _status(error.fault))
    version = inbound.rm_version or DEFAULT_VERSION
    if endpoint not in plane.endpoints:
        fault = Fault(
            FaultCode.SENDER,
            f"There is no endpoint {endpoint!r} here.",
            (AddressingFaultCode.DESTINATION_UNREACHABLE,),
        )
        return _fault(fault, version, 404)
    if not await _may_use(plane, caller, named_sequences(inbound.envelope)):
        fault = Fault(FaultCode.SENDER, "Access is denied: the sequence is another key's.")
        return _fault(fault, version, 403)
    host = ReliableSessionHost(
        plane.store,
        plane.endpoints[endpoint],
        CALL_FORMAT,
        address=str(request.url),
        settings=reliable_settings(plane.settings),
        relay=plane.relay,
        opened_by=caller.id,
    )
    try:
        reply = await host.handle(inbound.envelope, version)
    except (MessageRejected, SessionError, ConfigurationError) as error:
        fault = Fault(FaultCode.SENDER, str(error))
        return _answer(
            fault_envelope(fault, version, relates_to=inbound.envelope.message_id), version
        )
    if reply is None:
        return Response(status_code=202)
    return _answer(reply, version)


async def _may_use(plane: ControlPlane, caller: Principal, identifiers: list[str]) -> bool:
    """True unless a sequence named belongs to a session ``caller`` may not send to."""
    if caller.role is Role.ADMIN and caller.contract is None:
        return True
    async with plane.store.snapshot() as uow:
        for identifier in identifiers:
            sequence = await uow.sequences.get(identifier)
            if sequence is None or sequence.session_id is None:
                continue
            session = await uow.sessions.get(sequence.session_id)
            if session is not None and not allows(caller, Permission.SEND, session=session):
                return False
    return True


def _answer(reply: Envelope, version: RMVersion) -> Response:
    status = _status(reply.body) if isinstance(reply.body, Fault) else 200
    return Response(
        codec.encode(reply, version),
        status_code=status,
        media_type=f"{SOAP_MEDIA_TYPE}; charset=utf-8",
    )
