"""A Python client of the control plane's REST API, signing by itself in a security session.

::

    async with RemoteClient("https://ds.example", key) as client:
        vault = await client.open("Vault")
        await vault.send("deposit", {"amount": 5})
        await vault.close()

A session is driven with its own ``session_token``. Where the endpoint requires message
security the open answer carries ``session_key``, and every send is signed with it
(``DS-Signature``), each attempt with a new time and nonce; a send has a message id from the
start, so a retry after a lost answer is the same message and is stored once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import httpx

from durable_sessions.errors import RemoteRefused
from durable_sessions.model import signatures

RETRIES = 3
"""Attempts of a send whose answer was lost on the network."""


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            problem: dict[str, Any] = response.json()
        except ValueError:
            problem = {"detail": response.text[:200]}
        raise RemoteRefused(response.status_code, problem)
    body: dict[str, Any] = response.json()
    return body


class RemoteSession:
    """One session opened through the REST API."""

    def __init__(self, client: RemoteClient, opened: Mapping[str, Any]) -> None:
        self._http = client.http
        self._clock = client.clock
        self.id: str = opened["id"]
        self._auth = {"Authorization": f"Bearer {opened['session_token']}"}
        given = opened.get("session_key")
        self.key: bytes | None = None if given is None else signatures.decode_key(given)

    async def send(
        self,
        operation: str,
        args: Mapping[str, Any] | None = None,
        *,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """Send one message durably; the answer's ``seq``, ``message_id`` and ``status``."""
        given = dict(args or {})
        mid = message_id or str(uuid.uuid4())
        body = {"operation": operation, "args": given, "message_id": mid}
        for attempt in range(RETRIES):
            headers = dict(self._auth)
            if self.key is not None:
                signed = signatures.sign(self.key, self.id, mid, operation, given, self._clock())
                headers[signatures.HEADER] = signed.header()
            try:
                response = await self._http.post(
                    f"/v1/sessions/{self.id}/messages", json=body, headers=headers
                )
            except httpx.TransportError:
                if attempt == RETRIES - 1:
                    raise
                continue
            return _answer(response)
        raise AssertionError("unreachable")

    async def message(self, seq: int, *, wait_s: float = 0) -> dict[str, Any]:
        """Message ``seq`` of the session, waiting up to ``wait_s`` for its outcome."""
        response = await self._http.get(
            f"/v1/sessions/{self.id}/messages/{seq}", params={"wait": wait_s}, headers=self._auth
        )
        return _answer(response)

    async def close(self) -> dict[str, Any]:
        """Close the session gracefully (WCF ``Close``)."""
        return _answer(await self._http.post(f"/v1/sessions/{self.id}/close", headers=self._auth))

    async def terminate(self, reason: str = "terminated by the client") -> dict[str, Any]:
        """Terminate the session now (WCF ``Abort``)."""
        response = await self._http.post(
            f"/v1/sessions/{self.id}/terminate", json={"reason": reason}, headers=self._auth
        )
        return _answer(response)


class RemoteClient:
    """Opens sessions on a control plane at ``base_url`` with bearer ``key``."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http or httpx.AsyncClient(base_url=base_url, timeout=70.0)
        self.clock = clock
        self._key = key

    async def open(
        self,
        contract: str,
        *,
        endpoint: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> RemoteSession:
        """Open a session of ``contract``."""
        body: dict[str, Any] = {"contract": contract, "labels": dict(labels or {})}
        if endpoint is not None:
            body["endpoint"] = endpoint
        headers = {"Authorization": f"Bearer {self._key}"}
        return RemoteSession(
            self, _answer(await self.http.post("/v1/sessions", json=body, headers=headers))
        )

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self.http.aclose()

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()
