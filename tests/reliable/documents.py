"""Raw WS-RM documents, written by hand as a foreign peer would send them."""

from __future__ import annotations

from durable_sessions.wsrm.messages import RMVersion

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
ANONYMOUS = f"{WSA}/anonymous"
CALL = "urn:durable-sessions:call"


def envelope(
    version: RMVersion, action: str, *, headers: str = "", body: str = "", message_id: str = ""
) -> bytes:
    """A SOAP 1.2 envelope in ``version`` (prefix ``rm``) with WS-Addressing 1.0 headers.

    ``action`` is a WS-RM action name, or an absolute URI for an application message.
    """
    rm = version.value
    uri = action if ":" in action else f"{rm}/{action}"
    mid = f"<wsa:MessageID>{message_id}</wsa:MessageID>" if message_id else ""
    return (
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA}" xmlns:rm="{rm}">'
        f"<s:Header><wsa:Action>{uri}</wsa:Action>"
        f"<wsa:To>http://test/v1/soap/calculator</wsa:To>{mid}"
        f"<wsa:ReplyTo><wsa:Address>{ANONYMOUS}</wsa:Address></wsa:ReplyTo>{headers}</s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def create_sequence(version: RMVersion, offer: str, message_id: str) -> bytes:
    """CreateSequence with anonymous AcksTo and an offered reverse sequence."""
    endpoint = (
        f"<rm:Endpoint><wsa:Address>{ANONYMOUS}</wsa:Address></rm:Endpoint>"
        if version is RMVersion.WSRM_1_1
        else ""
    )
    body = (
        f"<rm:CreateSequence><rm:AcksTo><wsa:Address>{ANONYMOUS}</wsa:Address></rm:AcksTo>"
        f"<rm:Offer><rm:Identifier>{offer}</rm:Identifier>{endpoint}</rm:Offer>"
        "</rm:CreateSequence>"
    )
    return envelope(version, "CreateSequence", body=body, message_id=message_id)


def sequence_header(identifier: str, number: int, *, last: bool = False) -> str:
    """A ``Sequence`` header (``last``: February 2005's LastMessage marker)."""
    marker = "<rm:LastMessage/>" if last else ""
    return (
        f'<rm:Sequence s:mustUnderstand="true"><rm:Identifier>{identifier}</rm:Identifier>'
        f"<rm:MessageNumber>{number}</rm:MessageNumber>{marker}</rm:Sequence>"
    )


def ack_requested(identifier: str) -> str:
    """An ``AckRequested`` header."""
    return f"<rm:AckRequested><rm:Identifier>{identifier}</rm:Identifier></rm:AckRequested>"


def acknowledgement(identifier: str, lower: int, upper: int) -> str:
    """A ``SequenceAcknowledgement`` header with one range."""
    return (
        f"<rm:SequenceAcknowledgement><rm:Identifier>{identifier}</rm:Identifier>"
        f'<rm:AcknowledgementRange Lower="{lower}" Upper="{upper}"/></rm:SequenceAcknowledgement>'
    )


def call(
    version: RMVersion,
    identifier: str,
    number: int,
    operation: str,
    args: str = "",
    *,
    extra: str = "",
) -> bytes:
    """Message ``number`` calling ``operation`` (``args``: the argument elements)."""
    body = f'<{operation} xmlns="{CALL}">{args}</{operation}>'
    headers = sequence_header(identifier, number) + extra
    return envelope(
        version, f"urn:calc/{operation}", headers=headers, body=body, message_id=f"urn:m:{number}"
    )


def identified(version: RMVersion, action: str, identifier: str, extra: str = "") -> bytes:
    """CloseSequence or TerminateSequence of ``identifier``."""
    body = f"<rm:{action}><rm:Identifier>{identifier}</rm:Identifier>{extra}</rm:{action}>"
    return envelope(version, action, body=body, message_id=f"urn:m:{action}")
