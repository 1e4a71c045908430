"""``ReliableSessionClient``: a contract's calls as a WS-RM sequence over HTTP (the RM source).

::

    async with ReliableSessionClient(
        "http://host/v1/soap/calculator", Calculator, store=store
    ) as client:
        async with client.session() as calc:
            await calc.clear()
            await calc.add_to(5)
            print(await calc.equals())  # the reply comes back in the offered sequence

Each envelope is one POST; everything the destination sends back comes on the response
(anonymous addressing). The session logic is :class:`~durable_sessions.reliable.client.
ReliableSession`'s: state saved in ``store`` after every step, ``session(resume=id)`` to
continue a sequence in a new process. The client closes the HTTP client it made (not one
handed in) on :meth:`aclose`, or when its own ``async with`` block ends.

Over ``https://`` the destination's certificate is always verified, against ``ca_file`` if
given, else the system's CAs. A certificate that does not verify is not a lost message to
retransmit: the call raises :class:`~durable_sessions.errors.ConfigurationError` saying so.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from durable_sessions.errors import ConfigurationError
from durable_sessions.model.records import utcnow
from durable_sessions.reliable.calls import CALL_FORMAT
from durable_sessions.reliable.client import DEFAULT_SEND_TIMEOUT_S, Link, ReliableClient
from durable_sessions.store.base import Store
from durable_sessions.wsrm.errors import EnvelopeRejected
from durable_sessions.wsrm.messages import WSA_ANONYMOUS, Envelope, RMVersion
from durable_sessions.wsrm.settings import ReliableSessionSettings
from durable_sessions.wsrm.xml import codec

SOAP_MEDIA_TYPE = "application/soap+xml; charset=utf-8"


class ReliableSessionClient(ReliableClient):
    """Opens WS-RM sequences to the SOAP endpoint at ``url`` and calls ``contract`` through them.

    ``http`` is an HTTP client to use (and leave open); without one the client makes its own,
    verifying certificates against ``ca_file`` (else the system's CAs), which :meth:`aclose`
    closes. ``headers`` go on every request (the bearer key).
    """

    def __init__(
        self,
        url: str,
        contract: type[Any],
        *,
        store: Store,
        http: httpx.AsyncClient | None = None,
        headers: dict[str, str] | None = None,
        ca_file: str | None = None,
        settings: ReliableSessionSettings | None = None,
        send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(
            url,
            contract,
            store=store,
            calls=CALL_FORMAT,
            settings=settings,
            send_timeout_s=send_timeout_s,
            clock=clock,
        )
        self.url = url
        if http is not None and ca_file is not None:
            raise ConfigurationError(
                "ca_file applies to the HTTP client this client makes: give the one you hand "
                "in its own verify= context"
            )
        self.http = http or httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca_file))
        self._owns_http = http is None
        self.headers = dict(headers or {})

    async def link(self, create_id: str) -> Link:
        """Posts to :attr:`url`; the same for every sequence."""
        return _HttpLink(self)

    async def aclose(self) -> None:
        """Close the HTTP client this client made; sequences stay stored and resumable."""
        if self._owns_http:
            await self.http.aclose()


class _HttpLink(Link):
    def __init__(self, client: ReliableSessionClient) -> None:
        self.client = client

    @property
    def reply_address(self) -> str:
        return WSA_ANONYMOUS

    @property
    def _version(self) -> RMVersion:
        return self.client.settings.version

    async def send(self, envelope: Envelope) -> Envelope | None:
        try:
            response = await self.client.http.post(
                self.client.url,
                content=codec.encode(envelope, self._version),
                headers={**self.client.headers, "content-type": SOAP_MEDIA_TYPE},
            )
        except httpx.TransportError as e:
            if _certificate_refused(e):
                raise ConfigurationError(
                    f"the certificate of {self.client.url} does not verify ({e}): give the "
                    "CA that signed it as ca_file"
                ) from e
            return None  # lost on the way: the engine retransmits
        if response.status_code == 202 or not response.content:
            return None
        try:
            return codec.decode(response.content)
        except EnvelopeRejected:
            return None

    async def receive(self, within_s: float) -> list[Envelope]:
        await asyncio.sleep(within_s)  # nothing comes unasked over HTTP
        return []

    async def close(self, *, ended: bool) -> None:
        return None  # the HTTP client outlives its sequences


def _certificate_refused(error: BaseException) -> bool:
    """Whether a transport error comes from a server certificate that does not verify."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
