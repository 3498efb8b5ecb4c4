"""WhatsApp through Twilio: the inbound webhook's form, TwiML answers, and replies over the REST API.

The REST client is the twilio SDK's own, given an httpx-based HTTP client: httpx lets a test put a
fake api.twilio.com behind a transport, and lets us see 429/5xx and Retry-After before the SDK
turns them into a generic exception.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from osiris.app import jobs
from osiris.ingest.intake import Attachment, Inbound, MalformedMessage
from osiris.ingest.notify import SendFailed, Target, retry_after

# The twilio SDK is imported where it is used, once WhatsApp is configured and in use: not every
# process pays for every channel's SDK at start (issue 17).
log = logging.getLogger(__name__)
CHANNEL = "whatsapp"
MAX_MEDIA = 10  # Twilio sends at most 10 media items per message


def signature_ok(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    if not signature:
        return False
    from twilio.request_validator import RequestValidator

    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def parse_inbound(form: Mapping[str, str]) -> Inbound:
    """Twilio's inbound message fields → the normalized message. Media stay references."""
    sender = (form.get("From") or "").strip()
    sid = (form.get("MessageSid") or form.get("SmsMessageSid") or "").strip()
    if not sender or not sid:
        raise MalformedMessage("a Twilio message needs From and MessageSid")
    try:
        count = min(int(form.get("NumMedia") or 0), MAX_MEDIA)
    except ValueError:
        raise MalformedMessage("NumMedia must be a number") from None
    media = tuple(
        Attachment(
            filename=f"media-{i}",
            content_type=form.get(f"MediaContentType{i}") or "application/octet-stream",
            url=form[f"MediaUrl{i}"],
        )
        for i in range(count)
        if form.get(f"MediaUrl{i}")
    )
    number = sender.removeprefix("whatsapp:")
    ours = (form.get("To") or "").removeprefix("whatsapp:").replace(" ", "")  # the organization's number
    return Inbound(
        channel=CHANNEL,
        provider="twilio",
        delivery_id=sid,
        sender=sender,
        text=(form.get("Body") or "").strip(),
        # One conversation per number: the sender's open task is the thread.
        new_thread=sender,
        thread_keys=(sender,),
        allow_keys=(number,),
        accounts=(ours,) if ours else (),
        display_name=form.get("ProfileName") or None,
        attachments=media,
        meta={"media": [{"url": m.url, "content_type": m.content_type} for m in media]} if media else {},
    )


def twiml(text: str) -> str:
    from twilio.twiml.messaging_response import MessagingResponse

    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)


# --- outbound ----------------------------------------------------------------------------------


class ProviderBusy(Exception):
    def __init__(self, status: int, after: float) -> None:
        super().__init__(f"provider answered {status}")
        self.status = status
        self.after = after


@functools.cache
def httpx_twilio_client() -> type:
    """The SDK's async HTTP port on httpx (a class made when first needed: it subclasses the SDK's)."""
    from twilio.http import AsyncHttpClient
    from twilio.http.response import Response as TwilioResponse

    class HttpxTwilioClient(AsyncHttpClient):
        def __init__(self, transport: httpx.AsyncBaseTransport | None = None, timeout: float = 15.0) -> None:
            super().__init__(logging.getLogger("twilio.http"), is_async=True, timeout=timeout)
            self.transport = transport

        async def request(  # type: ignore[override]
            self,
            method: str,
            uri: str,
            params: dict[str, object] | None = None,
            data: dict[str, object] | None = None,
            headers: dict[str, str] | None = None,
            auth: tuple[str, str] | None = None,
            timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature
            allow_redirects: bool = False,
        ) -> TwilioResponse:
            async with httpx.AsyncClient(transport=self.transport, timeout=timeout or self.timeout) as client:
                resp = await client.request(
                    method.upper(),
                    uri,
                    params=params,  # type: ignore[arg-type]
                    data=data,  # type: ignore[arg-type]
                    headers=headers,
                    auth=auth,
                    follow_redirects=allow_redirects,
                )
            if resp.status_code == 429 or resp.status_code >= 500:
                raise ProviderBusy(resp.status_code, retry_after(resp.headers))
            return TwilioResponse(resp.status_code, resp.text, resp.headers)

    return HttpxTwilioClient


class WhatsAppSender:
    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_: str,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_seconds: float = 15.0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_ = from_
        self.transport = transport
        self.retry_seconds = retry_seconds

    def sender_for(self, target: Target) -> str:
        """The organization's own number when it has one (the number the requester wrote to)."""
        return f"whatsapp:{target.account}" if target.account else self.from_

    async def send(self, target: Target, text: str, key: str) -> dict[str, Any]:
        from twilio.base.exceptions import TwilioRestException
        from twilio.rest import Client

        client = Client(
            self.account_sid,
            self.auth_token,
            account_sid=self.account_sid,
            http_client=httpx_twilio_client()(self.transport),
        )
        try:
            message = await client.messages.create_async(
                to=target.to, from_=self.sender_for(target), body=text[:1600]
            )
        except ProviderBusy as exc:
            raise jobs.Retry(exc.after, f"twilio answered {exc.status}") from exc
        except httpx.TransportError as exc:
            raise jobs.Retry(self.retry_seconds, f"twilio unreachable: {type(exc).__name__}") from exc
        except TwilioRestException as exc:
            raise SendFailed(f"twilio refused: {exc.status} {exc.code}") from exc
        return {"provider_id": message.sid, "to_suffix": target.to[-4:]}
