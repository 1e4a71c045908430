"""Admitting a send to a security session: its ``DS-Signature`` checked, its nonce claimed.

Called before the send, so a refused message stores nothing. The nonce is claimed in a
transaction of its own, under the store's unique key, so of two concurrent replays exactly one
passes; a message refused after its nonce was claimed (bad arguments, a closed session) must
be signed again with a new nonce, as every retry is.
"""

from __future__ import annotations

from durable_sessions.engine.sending import SendRequest
from durable_sessions.errors import ConfigurationError, SignatureRefused, UniquenessViolation
from durable_sessions.model import signatures
from durable_sessions.store.base import Store


async def admit_signed(
    store: Store,
    server_secret: bytes,
    request: SendRequest,
    header: str | None,
    now: float,
    max_clock_skew_s: float = signatures.MAX_CLOCK_SKEW_S,
) -> None:
    """Refuse ``request`` unless ``header`` signs it for its session, fresh and never seen.

    Raises :class:`SignatureRefused` (or :class:`ConfigurationError` for a send without a
    message id, which a signed send needs so that a retry is the same message).
    """
    signature = signatures.parse(header)
    session_id = request.session_id
    if session_id is None:
        raise ConfigurationError("a signed message belongs to a session")
    if request.message_id is None:
        raise ConfigurationError(
            "a signed send names its message_id (the signature covers it, and a retry must "
            "be the same message)"
        )
    key = signatures.session_key(server_secret, session_id)
    signatures.verify(
        key,
        signature,
        session_id,
        request.message_id,
        request.operation,
        request.args,
        now,
        max_clock_skew_s,
    )
    try:
        async with store.transaction() as uow:
            # Twice the skew: a nonce is forgotten only once no control plane whose clock is
            # up to one skew behind could still find its time fresh.
            await uow.nonces.prune(session_id, int(now - 2 * max_clock_skew_s))
            await uow.nonces.add(session_id, signature.n, signature.t)
    except UniquenessViolation:
        raise SignatureRefused(
            "replayed", f"nonce {signature.n!r} was already used in this session (replay)"
        ) from None
