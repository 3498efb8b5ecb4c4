"""Email: raw RFC 5322 in (webhook or SMTP listener), threaded replies out over SMTP.

Threads are recognised by our plus address (`osiris+task-<id>@…`), by our own Message-IDs in
`In-Reply-To`/`References` (`<osiris.task-<id>-…@…>`), by a `[OSIRIS #<id>]` subject tag, and by the
original request's Message-ID. Replies carry `In-Reply-To`/`References` and `Auto-Submitted`, and we
never answer mail that says it was automatic, so two robots cannot talk to each other forever.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import html
import re
from email.message import EmailMessage
from typing import Any

from osiris.app import jobs
from osiris.ingest.intake import Attachment, Inbound, MalformedMessage
from osiris.ingest.notify import SendFailed, Target

CHANNEL = "email"
_MSGID = re.compile(r"<[^<>\s]+>")
_OUR_MSGID = re.compile(r"<osiris\.task-(\d+)-", re.IGNORECASE)
_PLUS = re.compile(r"\+task-(\d+)@", re.IGNORECASE)
_TAG = re.compile(r"\[OSIRIS #(\d+)\]", re.IGNORECASE)
_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|sv|wg)\s*:\s*|\[OSIRIS #\d+\]\s*)+", re.IGNORECASE)
_QUOTE_HEAD = re.compile(r"^(on\b.*\bwrote:|-{2,}\s*original message\s*-{2,}|_{5,})$", re.IGNORECASE)
_AUTOMATIC_SENDERS = ("mailer-daemon", "postmaster", "no-reply", "noreply")


# --- reading -----------------------------------------------------------------------------------


_BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote"})
_SKIP = frozenset({"script", "style", "head", "title"})
_TAG_NAME = re.compile(r"(/?)([A-Za-z][A-Za-z0-9:-]*)")


def html_to_text(markup: str) -> str:
    """An HTML body → its words: block elements end lines, list items get "- ", entities decoded.

    A forward scan, not `html.parser`: the standard library's parser rescans an unterminated tag or
    comment to the end of the buffer for every "<" after it (33,000 "<a " took ~60 s, 25,000
    "<!--" ~3 s). Here every search starts where the last one ended, and an unterminated tag,
    comment or skipped element ends the text, so the work is linear in the size of the markup.
    """
    parts: list[str] = []
    lower = markup.lower()
    i, n = 0, len(markup)
    while i < n:
        lt = markup.find("<", i)
        if lt < 0:
            parts.append(html.unescape(markup[i:]))
            break
        parts.append(html.unescape(markup[i:lt]))
        if markup.startswith("<!--", lt):
            close = markup.find("-->", lt + 4)
            i = n if close < 0 else close + 3
            continue
        tag = _TAG_NAME.match(markup, lt + 1)
        if tag is None and markup[lt + 1 : lt + 2] not in ("!", "?"):
            parts.append("<")  # "a < b" is text
            i = lt + 1
            continue
        gt = markup.find(">", lt + 1)
        if gt < 0:
            break  # an unterminated tag: nothing after it is text a person wrote
        i = gt + 1
        if tag is None:
            continue  # <!DOCTYPE …>, <![CDATA[…]]>, <?xml …?>
        closing, name = tag.group(1) == "/", tag.group(2).lower()
        if not closing and name in _SKIP and markup[gt - 1] != "/":
            close = lower.find(f"</{name}", i)
            gt = markup.find(">", close) if close >= 0 else -1
            i = n if gt < 0 else gt + 1
            continue
        if name in _BLOCKS:
            if not closing and name == "li":
                parts.append("\n- ")
            else:
                parts.append("\n")
            if not closing and markup[gt - 1] == "/":
                parts.append("\n")  # <br/>: a start and an end tag, as html.parser counts it
    lines = [" ".join(line.split()) for line in "".join(parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def strip_quoted(text: str) -> str:
    """The new words of a reply: stop at "On … wrote:", drop "> " lines."""
    kept: list[str] = []
    for line in text.splitlines():
        if _QUOTE_HEAD.match(line.strip()):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def clean_subject(subject: str) -> str:
    return _PREFIX.sub("", subject or "").strip()


def _is_automatic(msg: EmailMessage, sender: str, our_address: str | None) -> bool:
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(msg.get("Precedence", "")).strip().lower()
    local = sender.partition("@")[0]
    return (
        auto != "no"
        or precedence in ("bulk", "junk", "list")
        or any(local.startswith(a) for a in _AUTOMATIC_SENDERS)
        or (our_address is not None and sender == our_address.lower())
        or "X-Autoreply" in msg
    )


def _body_text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part.get_content()
    text = content if isinstance(content, str) else content.decode("utf-8", "replace")
    return html_to_text(text) if part.get_content_type() == "text/html" else text.strip()


def _attachments(msg: EmailMessage) -> tuple[Attachment, ...]:
    found = []
    for i, part in enumerate(msg.iter_attachments()):
        payload = part.get_payload(decode=True) or b""
        found.append(
            Attachment(
                filename=part.get_filename() or f"attachment-{i + 1}",
                content_type=part.get_content_type(),
                content=payload,
                size=len(payload),
            )
        )
    return tuple(found)


def _recipient_domains(msg: EmailMessage, recipients: tuple[str, ...]) -> tuple[str, ...]:
    """The domains the message was sent to, the envelope's first: they map it to an organization."""
    found: list[str] = []
    headers = []
    for h in ("Delivered-To", "To", "Cc"):
        try:
            headers += [a.addr_spec for v in msg.get_all(h, []) for a in getattr(v, "addresses", ())]
        except (ValueError, IndexError, AttributeError):
            continue  # an unreadable header maps nothing
    for address in [*recipients, *headers]:
        domain = address.rpartition("@")[2].strip().strip(">").lower()
        if domain and domain not in found:
            found.append(domain)
    return tuple(found)


def _thread_task_id(
    msg: EmailMessage, references: list[str], recipients: tuple[str, ...], our_address: str | None
) -> int | None:
    headers = (str(v) for h in ("To", "Cc", "Delivered-To") for v in msg.get_all(h, []))
    local, _, domain = (our_address or "").lower().partition("@")
    # Only our own plus address counts; someone else's "ann+task-3@…" in Cc does not.
    plus = re.compile(rf"{re.escape(local)}\+task-(\d+)@{re.escape(domain)}", re.I) if domain else _PLUS
    for address in [*recipients, *headers]:
        if m := plus.search(address):
            return int(m.group(1))
    for ref in references:
        if m := _OUR_MSGID.match(ref):
            return int(m.group(1))
    if m := _TAG.search(str(msg.get("Subject", ""))):
        return int(m.group(1))
    return None


def parse_message(raw: bytes, *, our_address: str | None, recipients: tuple[str, ...] = ()) -> Inbound | None:
    """Raw RFC 5322 → the normalized message; None for mail a robot sent (never answered)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    try:
        from_header = msg["From"]
        addresses = from_header.addresses if from_header is not None else ()
    except (ValueError, IndexError, AttributeError) as exc:
        raise MalformedMessage(f"the From header cannot be read: {type(exc).__name__}") from None
    if not addresses or "@" not in addresses[0].addr_spec:
        raise MalformedMessage("the message has no From address")
    sender = addresses[0].addr_spec.lower()
    if _is_automatic(msg, sender, our_address):
        return None
    message_id = str(msg.get("Message-ID", "")).strip()
    if not _MSGID.fullmatch(message_id):
        # Without a Message-ID a redelivery is recognised by its bytes.
        message_id = f"<{hashlib.sha256(raw).hexdigest()[:40]}@osiris.invalid>"
    references = _MSGID.findall(f"{msg.get('In-Reply-To', '')} {msg.get('References', '')}")
    text = _body_text(msg)
    subject = str(msg.get("Subject", "") or "")
    return Inbound(
        channel=CHANNEL,
        provider="email",
        delivery_id=message_id,
        sender=sender,
        text=text,
        new_thread=message_id,
        thread_keys=tuple(references),
        thread_task_id=_thread_task_id(msg, references, recipients, our_address),
        allow_keys=(sender, sender.rpartition("@")[2]),
        accounts=_recipient_domains(msg, recipients),
        subject=clean_subject(subject),
        followup_text=strip_quoted(text),
        display_name=addresses[0].display_name or None,
        attachments=_attachments(msg),
        meta={"subject": subject[:300], "message_id": message_id},
    )


def reply_target(inbound: Inbound) -> Target:
    subject = inbound.meta.get("subject") or ""
    return Target(
        CHANNEL,
        inbound.sender,
        thread=inbound.delivery_id,
        subject=subject if subject.lower().startswith("re:") else f"Re: {subject}".strip(),
    )


def reply_key(inbound: Inbound) -> str:
    return f"reply-email-{hashlib.sha256(inbound.delivery_id.encode()).hexdigest()[:32]}"


# --- writing -----------------------------------------------------------------------------------


def compose(target: Target, text: str, key: str, *, our_address: str) -> EmailMessage:
    local, _, domain = our_address.partition("@")
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr(("OSIRIS", our_address))
    msg["To"] = target.to
    msg["Subject"] = target.subject or "OSIRIS"
    msg["Date"] = email.utils.formatdate(localtime=False)
    # Deterministic per key: a resent copy has the same id, and mail clients show it once.
    msg["Message-ID"] = f"<osiris.{key}@{domain}>"
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834: no autoresponder should answer this
    if target.thread:
        msg["In-Reply-To"] = target.thread
        msg["References"] = target.thread
    if target.task_id is not None:
        msg["Reply-To"] = f"{local}+task-{target.task_id}@{domain}"
    msg.set_content(text)
    return msg


class EmailSender:
    def __init__(
        self,
        *,
        our_address: str,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
    ) -> None:
        self.our_address = our_address
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.starttls = starttls

    async def send(self, target: Target, text: str, key: str) -> dict[str, Any]:
        import aiosmtplib  # only once email replies are configured and sent (issue 17: start-up)

        msg = compose(target, text, key, our_address=self.our_address)
        try:
            await aiosmtplib.send(
                msg,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                start_tls=self.starttls,
                timeout=30,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise SendFailed("the relay refused the recipient") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                raise jobs.Retry(60.0, f"relay answered {exc.code}") from exc
            raise SendFailed(f"the relay refused: {exc.code}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise jobs.Retry(30.0, f"relay unreachable: {type(exc).__name__}") from exc
        return {"provider_id": msg["Message-ID"]}
