"""A service that fails while its downstream is out: the dead letter a replay exists for.

``Mailer`` takes sessions and datagrams (SessionMode.ALLOWED). ``send_mail`` raises while the
file named by ``DS_TEST_OUTAGE_FILE`` exists, as a real service fails while its mail server is
down; once the outage is over, a replay of the dead letter succeeds.
"""

from __future__ import annotations

import os
from typing import Protocol

from durable_sessions import Instancing, contract, operation, service

OUTAGE_ENV = "DS_TEST_OUTAGE_FILE"
SERVICE_PATH = "tests.api.outage:MailerService"


@contract
class Mailer(Protocol):
    """Sends mail, in a session or as datagrams."""

    @operation
    async def send_mail(self, to: str) -> None: ...


@service(Mailer, instancing=Instancing.PER_CALL)
class MailerService:
    """Fails while the outage file exists."""

    async def send_mail(self, to: str) -> None:
        """Send (pretend to) one mail."""
        outage = os.environ.get(OUTAGE_ENV)
        if outage and os.path.exists(outage):  # noqa: ASYNC240 (a stat, in a test double)
            raise ConnectionError(f"mail server unreachable, cannot send to {to}")
