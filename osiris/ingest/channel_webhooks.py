"""The channels' webhooks. Each checks the provider's signature on the raw bytes first — before
anything is interpreted or stored — then hands one normalized message to the intake flow.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app.problems import problem
from osiris.app.runtime import Runtime
from osiris.ingest import flows, slack, telegram, twilio
from osiris.ingest.intake import HELP, MalformedMessage, Outcome
from osiris.ingest.notify import Target, enqueue_reply

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _not_configured(channel: str) -> JSONResponse:
    return problem(403, "channel_not_configured", "Channel not configured", f"{channel} is not set up here")


def _bad_signature(detail: str) -> JSONResponse:
    return problem(401, "bad_signature", "Bad signature", detail)


def _malformed(detail: str) -> JSONResponse:
    return problem(400, "malformed_request", "Malformed request", detail)


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


# --- WhatsApp (Twilio) -------------------------------------------------------------------------


@router.post("/twilio", response_model=None)
async def twilio_webhook(request: Request) -> Response:
    runtime = _runtime(request)
    settings = runtime.settings
    if settings.twilio.auth_token is None:
        return _not_configured("WhatsApp")
    params = _form(await request.body())
    # Twilio signs the address it called: ours as configured, since a proxy may rewrite the host.
    url = settings.server.public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    token = settings.twilio.auth_token.get_secret_value()
    if not twilio.signature_ok(token, url, params, request.headers.get("X-Twilio-Signature")):
        return _bad_signature("X-Twilio-Signature does not match this request")
    try:
        inbound = twilio.parse_inbound(params)
    except MalformedMessage as exc:
        return _malformed(str(exc))
    outcome = await flows.accept(runtime, inbound)
    # Every TwiML answer is a paid message: none for a sender who is flooding us.
    text = "" if outcome.kind in ("rate_limited", "ignored") else outcome.reply
    return Response(twilio.twiml(text), media_type="application/xml")


# --- Slack -------------------------------------------------------------------------------------


async def _verified_slack_body(request: Request) -> bytes | JSONResponse:
    secret = _runtime(request).settings.slack.signing_secret
    if secret is None:
        return _not_configured("Slack")
    body = await request.body()
    if not slack.signature_ok(secret.get_secret_value(), body, request.headers):
        return _bad_signature("the Slack signature is missing, wrong, or older than five minutes")
    return body


@router.post("/slack/events", response_model=None)
async def slack_events(request: Request) -> Response:
    body = await _verified_slack_body(request)
    if isinstance(body, Response):
        return body
    try:
        payload = json.loads(body)
    except ValueError:
        return _malformed("the body is not JSON")
    if not isinstance(payload, dict):
        return _malformed("the body is not a JSON object")
    if payload.get("type") == "url_verification":
        return JSONResponse({"challenge": str(payload.get("challenge", ""))})
    inbound = slack.parse_event(payload) if payload.get("type") == "event_callback" else None
    if inbound is None:
        return JSONResponse({"ok": True})
    # Slack wants its 200 within three seconds: the answer goes out as a job after commit.
    await flows.accept(_runtime(request), inbound, after=flows.reply_in_thread(inbound))
    return JSONResponse({"ok": True})


@router.post("/slack/commands", response_model=None)
async def slack_commands(request: Request) -> Response:
    body = await _verified_slack_body(request)
    if isinstance(body, Response):
        return body
    form = _form(body)
    try:
        inbound = slack.parse_command(form)
    except ValueError as exc:
        return _malformed(str(exc))
    if not inbound.text:
        return JSONResponse({"response_type": "ephemeral", "text": HELP})
    user = slack.user_of(inbound.sender)

    async def anchor(session: AsyncSession, outcome: Outcome) -> None:
        if outcome.kind == "created" and not outcome.duplicate:
            target = Target(
                "slack",
                form["channel_id"],
                None,
                task_id=outcome.task_id,
                fallback_to=user,
                account=form.get("team_id") or None,
            )
            text = f"{outcome.reply} (asked by <@{user}>). Updates follow in this thread."
            await enqueue_reply(
                session, target, text, key=f"slack-anchor-{outcome.task_id}", anchor_task_id=outcome.task_id
            )

    outcome = await flows.accept(_runtime(request), inbound, after=anchor)
    return JSONResponse({"response_type": "ephemeral", "text": outcome.reply or HELP})


# --- email -------------------------------------------------------------------------------------


def _email_secret_ok(request: Request, secret: str) -> bool:
    given = request.headers.get("X-Osiris-Email-Secret")
    if given is None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        given = value if scheme.lower() == "bearer" else None
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


@router.post("/email", response_model=None)
async def email_webhook(request: Request) -> Response:
    runtime = _runtime(request)
    settings = runtime.settings
    if settings.email.webhook_secret is None:
        return _not_configured("Email")
    if not _email_secret_ok(request, settings.email.webhook_secret.get_secret_value()):
        return _bad_signature("send the shared secret in X-Osiris-Email-Secret")
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > settings.email.max_bytes:
        return problem(
            413, "too_large", "Payload too large", f"messages are limited to {settings.email.max_bytes} bytes"
        )
    raw = await request.body()
    if len(raw) > settings.email.max_bytes:
        return problem(
            413, "too_large", "Payload too large", f"messages are limited to {settings.email.max_bytes} bytes"
        )
    if not raw.strip():
        return _malformed("the body must be a raw RFC 5322 message")
    try:
        outcome = await flows.accept_email(runtime, raw)
    except MalformedMessage as exc:
        return _malformed(str(exc))
    if outcome.kind == "rate_limited":
        return problem(429, "rate_limited", "Too many requests", outcome.reply)
    return JSONResponse(
        {
            "outcome": outcome.kind,
            "task_id": outcome.task_id,
            "reply": outcome.reply,
            "duplicate": outcome.duplicate,
        }
    )


# --- Telegram ----------------------------------------------------------------------------------


@router.post("/telegram", response_model=None)
async def telegram_webhook(request: Request) -> Response:
    runtime = _runtime(request)
    settings = runtime.settings
    if settings.telegram.webhook_secret is None:
        return _not_configured("Telegram")
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token")
    if not telegram.secret_ok(settings.telegram.webhook_secret.get_secret_value(), given):
        return _bad_signature("X-Telegram-Bot-Api-Secret-Token does not match")
    try:
        payload = json.loads(await request.body())
    except ValueError:
        return _malformed("the body is not JSON")
    if not isinstance(payload, dict) or not isinstance(payload.get("update_id"), int):
        return _malformed("expected a Telegram Update with an update_id")
    token = settings.telegram.bot_token
    replied = telegram.replied_message(payload)
    replied_task = None
    if replied is not None:
        async with runtime.sessions() as session:
            replied_task = await telegram.task_of_our_message(session, replied)
    try:
        inbound = telegram.parse_update(
            payload,
            our_id=telegram.bot_id(token.get_secret_value()) if token else None,
            username=settings.telegram.bot_username,
            replied_task=replied_task,
        )
    except (KeyError, TypeError, ValueError):
        return _malformed("the update is not shaped like the Bot API's")
    if inbound is None:
        return JSONResponse({"ok": True})
    # Telegram retries until it gets a 2xx: answer at once; the reply goes out as a job after commit.
    await flows.accept(runtime, inbound, after=flows.reply_in_thread(inbound))
    return JSONResponse({"ok": True})
