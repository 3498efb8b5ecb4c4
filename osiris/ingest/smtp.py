"""The optional inbound SMTP listener (aiosmtpd), served on the application's own event loop.

aiosmtpd's Controller would run a second loop in a thread; the database engine belongs to this one,
so the SMTP protocol is served here with `loop.create_server`, as the Controller does internally.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from osiris.app.errors import OsirisError
from osiris.app.runtime import Runtime
from osiris.ingest import email as email_channel
from osiris.ingest import flows
from osiris.ingest.intake import redact

if TYPE_CHECKING:  # aiosmtpd itself only when the listener starts (issue 17: start-up)
    from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

# aiosmtpd logs each command line, sender and recipient at INFO (and message lines at DEBUG) on this
# logger: addresses are personal data, so they reach our logs as `redact` leaves them.
AIOSMTPD_LOGGER = "mail.log"
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"'@]+@[^\s<>()\[\],;:\"'@]+")


class RedactAddresses(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _ADDRESS.sub(lambda m: redact(m.group(0)), message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACT = RedactAddresses()


class IntakeHandler:
    """aiosmtpd's hooks: accept mail for our domain, turn each message into an intake call."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        address = runtime.settings.email.address
        self.domain = address.rpartition("@")[2].lower() if address else None

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.domain and not address.lower().endswith("@" + self.domain):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            outcome = await flows.accept_email(self.runtime, raw or b"", recipients=tuple(envelope.rcpt_tos))
        except email_channel.MalformedMessage as exc:
            return f"550 5.6.0 {exc}"
        except OsirisError as exc:
            return f"550 5.6.0 {exc.detail}"
        except Exception:  # the database may be away: the sending server keeps the mail and retries
            log.exception("smtp intake failed")
            return "451 4.3.0 Temporary failure, try again later"
        if outcome.kind == "rate_limited":
            return "451 4.7.1 Too many messages from this sender, try again later"
        return "250 2.0.0 Accepted"


@asynccontextmanager
async def listener(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
    """A startup hook: listen while the application runs. Port 0 picks a free port (tests)."""
    from aiosmtpd.smtp import SMTP

    settings = runtime.settings
    handler = IntakeHandler(runtime)
    aiosmtpd_log = logging.getLogger(AIOSMTPD_LOGGER)
    if _REDACT not in aiosmtpd_log.filters:
        aiosmtpd_log.addFilter(_REDACT)

    def protocol() -> Any:
        return SMTP(
            handler,
            hostname=handler.domain or "osiris.local",
            ident="OSIRIS",
            data_size_limit=settings.email.max_bytes,
            decode_data=False,
        )

    server = await asyncio.get_running_loop().create_server(
        protocol, host=settings.smtp.listen_host, port=settings.smtp.listen_port
    )
    runtime.services.smtp_port = server.sockets[0].getsockname()[1]
    log.info("smtp listener on %s:%s", settings.smtp.listen_host, runtime.services.smtp_port)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
