from __future__ import annotations

import asyncio
import email.utils
import secrets
import smtplib
from email.message import EmailMessage

from sqlalchemy import select

from osiris.app.models import ChannelAttachment, Delivery, Message, Task

from .conftest import OUR_ADDRESS
from .ingest_helpers import mail, only_task

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def test_a_multipart_email_with_an_attachment_becomes_a_task(channels, runtime, factory, client):
    msg = mail(
        "Fwd: Broken chart colours",
        "The legend uses the wrong palette.\nSee the screenshot.",
        html="<p>The legend uses the <b>wrong</b> palette.</p>",
        attach=("chart.png", "image/png", PNG),
    )
    r = await channels.email(msg.as_bytes())
    assert r.status_code == 200, r.text
    task = await only_task(runtime)
    assert r.json() == {
        "outcome": "created",
        "task_id": task.id,
        "reply": f"Task #{task.id} created: Broken chart colours",
        "duplicate": False,
    }
    assert task.title == "Broken chart colours" and task.channel == "email"
    assert task.description.startswith("The legend uses the wrong palette.\nSee the screenshot.")
    assert "chart.png (image/png" in task.description
    assert task.requester == msg["From"].addresses[0].addr_spec and task.channel_thread == msg["Message-ID"]
    _, agent = await factory.member("agent")
    listed = (await client.get(f"/api/v1/tasks/{task.id}/attachments", headers=agent)).json()
    assert [(a["filename"], a["content_type"], a["size_bytes"], a["stored"]) for a in listed] == [
        ("chart.png", "image/png", len(PNG), True)
    ]
    r = await client.get(f"/api/v1/tasks/{task.id}/attachments/{listed[0]['id']}", headers=agent)
    assert r.content == PNG and r.headers["content-disposition"] == 'attachment; filename="chart.png"'


async def test_an_html_only_email_is_turned_into_text(channels, runtime):
    msg = EmailMessage()
    msg["From"] = "bob@example.org"
    msg["To"] = OUR_ADDRESS
    msg["Subject"] = "Important: signup form"
    msg["Message-ID"] = email.utils.make_msgid()
    msg.set_content(
        "<html><head><style>p{}</style></head><body><p>The signup form &amp; the login</p>"
        "<ul><li>reject emails with a plus</li></ul><script>x()</script></body></html>",
        subtype="html",
    )
    assert (await channels.email(msg.as_bytes())).status_code == 200
    task = await only_task(runtime)
    assert task.description == "The signup form & the login\n\n- reject emails with a plus"
    assert task.priority == 2  # "important"


async def test_replies_thread_by_message_id_and_by_plus_address(channels, runtime, count):
    first = mail("Add an RSS feed", "for the blog")
    await channels.email(first.as_bytes())
    task = await only_task(runtime)
    sender = first["From"].addresses[0].addr_spec
    reply = mail(
        "Re: Add an RSS feed",
        "Atom would be fine too.\n\nOn Mon, Ada wrote:\n> for the blog\n",
        sender=sender,
        reply_to_id=first["Message-ID"],
    )
    r = await channels.email(reply.as_bytes())
    assert r.json()["outcome"] == "followup"
    # A reply to one of our notifications reaches us at the plus address, without References.
    plus = mail(
        "Re: [OSIRIS #1] Add an RSS feed",
        "And a JSON feed.",
        sender=sender,
        to=f"osiris+task-{task.id}@osiris.example.com",
    )
    assert (await channels.email(plus.as_bytes())).json()["outcome"] == "followup"
    async with runtime.sessions() as session:
        bodies = (await session.execute(select(Message.body).order_by(Message.id))).scalars().all()
    assert bodies == ["Atom would be fine too.", "And a JSON feed."]
    assert await count(Task) == 1


async def test_cancel_by_email(channels, runtime):
    first = mail("Drop the beta banner", "please")
    await channels.email(first.as_bytes())
    task = await only_task(runtime)
    sender = first["From"].addresses[0].addr_spec
    cancel = mail(
        "Re: Drop the beta banner",
        f"cancel #{task.id}\n\nOn Tue, OSIRIS wrote:\n> Task created",
        sender=sender,
    )
    assert (await channels.email(cancel.as_bytes())).json()["outcome"] == "cancelled"
    assert (await only_task(runtime)).status == "REJECTED"


async def test_bad_secret_is_refused_and_nothing_is_stored(channels, count):
    raw = mail("Sneaky", "hello").as_bytes()
    r = await channels.email(raw, secret="guess")
    assert r.status_code == 401 and r.json()["code"] == "bad_signature"
    r = await channels.client.post("/api/v1/webhooks/email", content=raw)
    assert r.status_code == 401
    assert await count(Task) == 0 and await count(Delivery) == 0


async def test_the_same_message_id_twice_is_one_task(channels, count):
    raw = mail("Add a sitemap", "thanks").as_bytes()
    first = (await channels.email(raw)).json()
    second = (await channels.email(raw)).json()
    assert second == {**first, "duplicate": True}
    assert await count(Task) == 1


async def test_malformed_and_oversized_mail(channels, settings, monkeypatch, count):
    r = await channels.email(b"Subject: no sender\r\n\r\nhello\r\n")
    assert r.status_code == 400 and r.json()["code"] == "malformed_request"
    r = await channels.email(b"   ")
    assert r.status_code == 400
    monkeypatch.setattr(settings.email, "max_bytes", 1000)
    r = await channels.email(mail("Big", "x" * 5000).as_bytes())
    assert r.status_code == 413
    assert await count(Delivery) == 0


async def test_automatic_mail_is_never_answered(channels, drain, smtp_sink, count):
    r = await channels.email(mail("Out of office", "I am away", Auto_Submitted="auto-replied").as_bytes())
    assert r.json()["outcome"] == "ignored"
    await drain()
    assert await count(Task) == 0 and smtp_sink.messages == []


async def test_a_domain_not_on_the_allowlist_gets_a_polite_no_by_mail(
    channels, settings, monkeypatch, drain, smtp_sink, count
):
    monkeypatch.setattr(settings.email, "allowed_domains", ["corp.example"])
    msg = mail("Let me in", "please", sender="eve@elsewhere.example")
    assert (await channels.email(msg.as_bytes())).json()["outcome"] == "refused"
    await drain()
    assert await count(Task) == 0
    [sent] = smtp_sink.messages
    assert sent["to"] == ["eve@elsewhere.example"] and sent["message"]["In-Reply-To"] == msg["Message-ID"]
    assert "not set up" in sent["message"].get_content()
    ok = mail("Hello", "from inside", sender="carol@corp.example")
    assert (await channels.email(ok.as_bytes())).json()["outcome"] == "created"


async def test_the_smtp_listener_takes_mail_and_the_answer_threads(runtime, drain, smtp_sink):
    msg = mail("Translate the About page", "into German, urgent")
    port = runtime.services.smtp_port

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(msg)

    await asyncio.to_thread(send)
    task = await only_task(runtime)
    assert task.title == "Translate the About page" and task.priority == 3
    assert task.channel_thread == msg["Message-ID"]
    await drain()
    [ack] = smtp_sink.messages
    reply = ack["message"]
    assert ack["to"] == [task.requester] and ack["from"] == OUR_ADDRESS
    assert reply["In-Reply-To"] == msg["Message-ID"] and reply["References"] == msg["Message-ID"]
    assert reply["Subject"] == "Re: Translate the About page"
    assert reply["Reply-To"] == f"osiris+task-{task.id}@osiris.example.com"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply.get_content().strip() == f"Task #{task.id} created: Translate the About page"


async def test_the_smtp_listener_refuses_other_domains(runtime):
    port = runtime.services.smtp_port

    def send() -> dict:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            return smtp.sendmail(
                "x@example.org", ["someone@not-ours.example"], b"Subject: hi\r\n\r\nhello\r\n"
            )

    try:
        await asyncio.to_thread(send)
    except smtplib.SMTPRecipientsRefused as exc:
        assert exc.recipients["someone@not-ours.example"][0] == 550
    else:
        raise AssertionError("the listener accepted mail for a domain that is not ours")


async def test_end_to_end_every_step_is_a_threaded_mail(channels, runtime, factory, client, drain, smtp_sink):
    first = mail("Add a README", "with install steps")
    await channels.email(first.as_bytes())
    task = await only_task(runtime)
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    await client.post(f"/api/v1/tasks/{task.id}/claim", headers=agent)
    await drain()
    await client.post(
        f"/api/v1/tasks/{task.id}/artifacts", json={"content": {"README.md": "# hi\n"}}, headers=agent
    )
    await drain()
    await client.post(f"/api/v1/tasks/{task.id}/approve", headers=reviewer)
    await drain()
    sent = [m["message"] for m in smtp_sink.messages]
    assert len(sent) == 4, [m["Subject"] for m in sent]
    assert {m["To"] for m in sent} == {task.requester}
    assert {m["In-Reply-To"] for m in sent} == {first["Message-ID"]}
    assert [m["Subject"] for m in sent[1:]] == [f"[OSIRIS #{task.id}] Add a README"] * 3
    assert "picked up" in sent[1].get_content() and "done and merged" in sent[3].get_content()
    assert len({m["Message-ID"] for m in sent}) == 4
    async with runtime.sessions() as session:
        assert (await session.execute(select(ChannelAttachment))).first() is None


async def test_the_smtp_listener_logs_addresses_only_by_their_last_four_characters(runtime, caplog):
    sender = f"dora.{secrets.token_hex(3)}@private.example"
    msg = mail("Log me carefully", "hello", sender=sender)
    port = runtime.services.smtp_port

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(msg, from_addr=sender, to_addrs=[OUR_ADDRESS])

    with caplog.at_level("DEBUG"):
        await asyncio.to_thread(send)
        await only_task(runtime)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "sender: …mple" in logged  # aiosmtpd's own INFO lines, redacted
    for secret in (sender, sender.split("@")[0], "private.example", OUR_ADDRESS):
        assert secret not in logged
