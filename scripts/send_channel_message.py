"""Send one signed webhook request to a running OSIRIS, exactly as a chat provider would.

For local trials of the channels without a Twilio, Slack, Telegram, mail or GitHub account: the
request has the provider's shape and is signed the provider's way (Twilio's RequestValidator, Slack's
SignatureVerifier, GitHub's HMAC-SHA256), with the secret from the same environment variable the server
reads (or from `.env` in the current directory, as the server does).

    OSIRIS_TWILIO_AUTH_TOKEN=… .venv/bin/python scripts/send_channel_message.py --channel whatsapp \\
        --from +15550001111 --text "The export button crashes"

Prints the HTTP status and the answer's body; exits 1 on a non-2xx answer (or no answer), 2 when
the secret is not set. The secret itself is never printed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator

# channel → the environment variable the server reads its secret from (osiris/app/config.py)
SECRET_ENV = {
    "whatsapp": "OSIRIS_TWILIO_AUTH_TOKEN",
    "slack": "OSIRIS_SLACK_SIGNING_SECRET",
    "telegram": "OSIRIS_TELEGRAM_WEBHOOK_SECRET",
    "email": "OSIRIS_EMAIL_WEBHOOK_SECRET",
    "github-issue": "OSIRIS_GITHUB_WEBHOOK_SECRET",
}
DEFAULT_FROM = {
    "whatsapp": "+15550001111",
    "slack": "T0LOCAL01:U0LOCAL01",
    "telegram": "111222333",
    "email": "ann@example.com",
    "github-issue": "octocat",
}
SERVER_PUBLIC_URL = "http://127.0.0.1:8000"  # the server's default OSIRIS_PUBLIC_URL


class Usage(Exception):
    """A problem with the arguments or the environment: exit 2."""


_dotenv: dict[str, str | None] | None = None


def env(name: str) -> str | None:
    """The variable from the environment, else from `.env` in the current directory (the server's
    own order: pydantic-settings prefers the environment)."""
    global _dotenv
    value = os.environ.get(name)
    if value is not None:
        return value
    if _dotenv is None:
        _dotenv = {}
        if Path(".env").is_file():
            from dotenv import dotenv_values

            _dotenv = dict(dotenv_values(".env"))
    return _dotenv.get(name)


def title_of(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else "(no subject)"


# --- one request per channel: (path, body, headers) ----------------------------------------------

Request = tuple[str, bytes, dict[str, str]]


def whatsapp(secret: str, sender: str, text: str, public_url: str) -> Request:
    """Twilio's inbound WhatsApp form; Twilio signs the URL it calls, i.e. OSIRIS_PUBLIC_URL + path."""
    path = "/api/v1/webhooks/twilio"
    number = sender.removeprefix("whatsapp:")
    sid = "SM" + secrets.token_hex(16)
    form = {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Local trial",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": number.lstrip("+"),
        "SmsStatus": "received",
        "Body": text,
        "To": env("OSIRIS_TWILIO_WHATSAPP_FROM") or "whatsapp:+14155238886",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": env("OSIRIS_TWILIO_ACCOUNT_SID") or "AC" + "0" * 32,
        "From": f"whatsapp:{number}",
        "ApiVersion": "2010-04-01",
    }
    signature = RequestValidator(secret).compute_signature(public_url.rstrip("/") + path, form)
    body = str(httpx.QueryParams(form)).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    return path, body, headers


def _slack_ids(sender: str) -> tuple[str, str]:
    team, _, user = sender.rpartition(":")
    return team or "T0LOCAL01", user


def slack(secret: str, sender: str, text: str, via: str) -> Request:
    """A direct message to the app (Events API), or the `/osiris` slash command; v0 signature."""
    team, user = _slack_ids(sender)
    ts = f"{time.time():.6f}"
    channel = "D" + hashlib.sha256(f"{team}:{user}".encode()).hexdigest()[:10].upper()  # the DM
    if via == "command":
        path = "/api/v1/webhooks/slack/commands"
        form = {
            "token": "local-trial",
            "team_id": team,
            "team_domain": "local",
            "channel_id": channel,
            "channel_name": "directmessage",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/osiris",
            "text": text,
            "response_url": "https://hooks.slack.com/commands/local/trial",
            "trigger_id": f"{int(time.time())}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}",
            "api_app_id": "A0LOCAL01",
        }
        body = str(httpx.QueryParams(form)).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        path = "/api/v1/webhooks/slack/events"
        payload = {
            "token": "local-trial",
            "team_id": team,
            "api_app_id": "A0LOCAL01",
            "event": {
                "type": "message",
                "channel_type": "im",
                "user": user,
                "text": text,
                "ts": ts,
                "channel": channel,
                "event_ts": ts,
                "team": team,
            },
            "type": "event_callback",
            "event_id": "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(time.time()),
        }
        body = json.dumps(payload).encode()
        content_type = "application/json"
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature or "",
    }
    return path, body, headers


def telegram(secret: str, sender: str, text: str) -> Request:
    """A private-chat message Update, as the Bot API posts it to a webhook."""
    if not sender.isdigit():
        raise Usage("--from for telegram is a numeric user id, e.g. 111222333")
    user_id = int(sender)
    update = {
        "update_id": 1 + secrets.randbelow(2**31 - 2),
        "message": {
            "message_id": 1 + secrets.randbelow(2**31 - 2),
            "from": {"id": user_id, "is_bot": False, "first_name": "Local", "username": f"user{user_id}"},
            "chat": {"id": user_id, "type": "private", "first_name": "Local"},
            "date": int(time.time()),
            "text": text,
        },
    }
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret}
    return "/api/v1/webhooks/telegram", json.dumps(update).encode(), headers


def email(secret: str, sender: str, text: str) -> Request:
    """A raw RFC 5322 message; subject = the first line of the text."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = env("OSIRIS_EMAIL_ADDRESS") or "osiris@localhost"
    msg["Subject"] = title_of(text)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    msg.set_content(text)
    headers = {"Content-Type": "message/rfc822", "X-Osiris-Email-Secret": secret}
    return "/api/v1/webhooks/email", msg.as_bytes(), headers


def default_github_repo() -> str | None:
    """The GitHub repository the server serves (OSIRIS_GITHUB_REPO, bare or a JSON mapping)."""
    raw = (env("OSIRIS_GITHUB_REPO") or "").strip()
    if not raw.startswith("{"):
        return raw or None
    mapping = json.loads(raw)
    return mapping.get(env("OSIRIS_DEFAULT_REPO") or "default") or next(iter(mapping.values()), None)


def github_issue(secret: str, sender: str, text: str, repo: str | None, number: int | None) -> Request:
    """GitHub's `issues` / `opened` event for an issue carrying the OSIRIS label, HMAC-SHA256 signed."""
    repo = repo or default_github_repo()
    if not repo or repo.count("/") != 1:
        raise Usage("--repo owner/name is needed for github-issue (or OSIRIS_GITHUB_REPO)")
    owner, name = repo.split("/")
    number = number or 100000 + secrets.randbelow(900000)
    label = env("OSIRIS_GITHUB_ISSUE_LABEL") or "osiris"
    user = {"login": sender, "id": 1 + secrets.randbelow(10**8), "type": "User"}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload: dict[str, Any] = {
        "action": "opened",
        "issue": {
            "id": 1 + secrets.randbelow(10**9),
            "number": number,
            "title": title_of(text),
            "body": text,
            "user": user,
            "labels": [{"id": 1, "name": label, "color": "ededed", "default": False}],
            "state": "open",
            "locked": False,
            "comments": 0,
            "created_at": now,
            "updated_at": now,
            "author_association": "OWNER",
            "url": f"https://api.github.com/repos/{repo}/issues/{number}",
            "html_url": f"https://github.com/{repo}/issues/{number}",
        },
        "repository": {
            "id": 1 + secrets.randbelow(10**9),
            "name": name,
            "full_name": repo,
            "private": True,
            "owner": {"login": owner, "id": 1 + secrets.randbelow(10**8), "type": "Organization"},
            "html_url": f"https://github.com/{repo}",
            "default_branch": "main",
        },
        "sender": user,
    }
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/osiris-local",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "0",
        "X-Hub-Signature-256": signature,
    }
    return "/api/v1/webhooks/github", body, headers


def build(args: argparse.Namespace, secret: str) -> Request:
    sender = args.sender or DEFAULT_FROM[args.channel]
    if args.channel == "whatsapp":
        public_url = args.public_url or env("OSIRIS_PUBLIC_URL") or SERVER_PUBLIC_URL
        return whatsapp(secret, sender, args.text, public_url)
    if args.channel == "slack":
        return slack(secret, sender, args.text, args.slack_via)
    if args.channel == "telegram":
        return telegram(secret, sender, args.text)
    if args.channel == "email":
        return email(secret, sender, args.text)
    return github_issue(secret, sender, args.text, args.repo, args.issue)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Secrets come from: " + ", ".join(f"{c}: {v}" for c, v in SECRET_ENV.items()),
    )
    ap.add_argument("--channel", required=True, choices=sorted(SECRET_ENV))
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="where OSIRIS listens")
    ap.add_argument(
        "--from",
        dest="sender",
        help="the sender: a phone number (whatsapp), [TEAM:]USER ids (slack), a numeric user id "
        "(telegram), an address (email), a login (github-issue)",
    )
    ap.add_argument("--text", required=True, help="the message; its first line is the title")
    ap.add_argument(
        "--public-url",
        help="whatsapp: the address Twilio signs (default OSIRIS_PUBLIC_URL, else the server's default "
        f"{SERVER_PUBLIC_URL}); must match the server's OSIRIS_PUBLIC_URL",
    )
    ap.add_argument(
        "--slack-via",
        choices=("events", "command"),
        default="events",
        help="slack: a direct message to the app (events) or the /osiris slash command",
    )
    ap.add_argument("--repo", help="github-issue: owner/name (default from OSIRIS_GITHUB_REPO)")
    ap.add_argument("--issue", type=int, help="github-issue: the issue number (default random)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    variable = SECRET_ENV[args.channel]
    secret = env(variable)
    if not secret:
        print(f"{variable} is not set (the same variable the server reads)", file=sys.stderr)
        return 2
    try:
        path, body, headers = build(args, secret)
    except Usage as exc:
        print(exc, file=sys.stderr)
        return 2
    url = args.url.rstrip("/") + path
    print(f"POST {url} ({args.channel})", file=sys.stderr)
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        print(f"no answer from {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"HTTP {response.status_code}")
    print(response.text)
    if args.channel == "github-issue" and response.status_code == 202:
        print(
            "accepted: the worker creates the task from the github_event job "
            "(with GitHub as the code host and the repository served)",
            file=sys.stderr,
        )
    return 0 if response.is_success else 1


if __name__ == "__main__":
    raise SystemExit(main())
