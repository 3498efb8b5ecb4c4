from __future__ import annotations

import pytest
from sqlalchemy import select

from osiris.app import jobs
from osiris.app.models import ChannelAttachment, Delivery, Message, Task
from osiris.ingest.notify import ChannelNotifier

from .conftest import TWILIO_FROM, TWILIO_SID
from .ingest_helpers import number, said, whatsapp


async def task_by_id(runtime, task_id: int) -> Task:
    async with runtime.sessions() as session:
        return await session.get(Task, task_id)


async def test_a_whatsapp_message_becomes_a_task_and_twiml_confirms_it(channels, runtime, count):
    sender = number()
    form = whatsapp(
        "URGENT: the export button crashes\nIt fails on large files.",
        sender,
        NumMedia="1",
        MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        MediaContentType0="image/jpeg",
    )
    reply = said(await channels.twilio(form))
    task = (await _tasks(runtime))[-1]
    assert reply == f"Task #{task.id} created: URGENT: the export button crashes"
    assert task.status == "PENDING" and task.channel == "whatsapp"
    assert task.requester == f"whatsapp:{sender}" and task.channel_thread == f"whatsapp:{sender}"
    assert task.priority == 3  # "urgent"
    assert "It fails on large files." in task.description
    async with runtime.sessions() as session:
        media = (await session.execute(select(ChannelAttachment))).scalars().all()
    assert [(m.url, m.content, m.content_type) for m in media] == [
        (form["MediaUrl0"], None, "image/jpeg")  # a reference only: nothing was fetched
    ]
    assert await count(Delivery, Delivery.provider == "twilio") == 1


async def test_a_follow_up_in_the_same_thread_is_a_message_on_the_task(channels, runtime, count):
    sender = number()
    said(await channels.twilio(whatsapp("Add dark mode", sender)))
    task = (await _tasks(runtime))[-1]
    form = whatsapp("Also for the settings page", sender)
    assert said(await channels.twilio(form)) == f"Added to task #{task.id}."
    async with runtime.sessions() as session:
        msg = (await session.execute(select(Message).where(Message.task_id == task.id))).scalar_one()
    assert (msg.body, msg.source, msg.provider_id, msg.direction) == (
        "Also for the settings page",
        "whatsapp",
        form["MessageSid"],
        "to_agent",
    )
    assert await count(Task) == 1


async def test_naming_a_task_by_number_follows_up_on_it(channels, runtime):
    sender = number()
    said(await channels.twilio(whatsapp("First request", sender)))
    first = (await _tasks(runtime))[-1]
    assert said(await channels.twilio(whatsapp("new: Second request", sender))).endswith("Second request")
    assert said(await channels.twilio(whatsapp(f"#{first.id} one more detail", sender))) == (
        f"Added to task #{first.id}."
    )
    async with runtime.sessions() as session:
        body = await session.scalar(select(Message.body).where(Message.task_id == first.id))
    assert body == "one more detail"


async def test_the_requester_cancels_their_task_and_nobody_else_can(channels, runtime, drain, fake_twilio):
    sender, stranger = number(), number()
    said(await channels.twilio(whatsapp("Rename the app", sender)))
    task = (await _tasks(runtime))[-1]
    assert "can't find task" in said(await channels.twilio(whatsapp(f"cancel #{task.id}", stranger)))
    assert (await task_by_id(runtime, task.id)).status == "PENDING"
    assert said(await channels.twilio(whatsapp(f"cancel #{task.id}", sender))) == (
        f"Task #{task.id} cancelled: Rename the app"
    )
    assert (await task_by_id(runtime, task.id)).status == "REJECTED"
    await drain()
    assert fake_twilio.calls == []  # answered on the spot; no second message about it


async def test_status_commands(channels, runtime):
    sender = number()
    assert said(await channels.twilio(whatsapp("status", sender))) == "You have no open requests."
    said(await channels.twilio(whatsapp("Fix the footer", sender)))
    task = (await _tasks(runtime))[-1]
    assert said(await channels.twilio(whatsapp("status", sender))) == (
        f"Task #{task.id} (Fix the footer) is waiting for an agent."
    )
    assert said(await channels.twilio(whatsapp(f"Status #{task.id}", sender))).startswith(f"Task #{task.id} ")
    assert "can't find" in said(await channels.twilio(whatsapp(f"status #{task.id}", number())))


async def test_a_bad_signature_is_refused_and_nothing_is_stored(channels, count):
    form = whatsapp("Make it faster", number())
    r = await channels.twilio(form, token="not-the-token")
    assert r.status_code == 401 and r.json()["code"] == "bad_signature"
    r = await channels.twilio(form, url="https://attacker.example/api/v1/webhooks/twilio")
    assert r.status_code == 401
    r = await channels.client.post("/api/v1/webhooks/twilio", data=form)  # unsigned
    assert r.status_code == 401
    assert await count(Task) == 0 and await count(Delivery) == 0


async def test_the_same_message_sid_twice_makes_one_task_and_the_same_answer(channels, runtime, count):
    form = whatsapp("Add CSV export", number())
    first = said(await channels.twilio(form))
    second = said(await channels.twilio(form))
    assert first == second and first.startswith("Task #")
    assert await count(Task) == 1 and await count(Delivery) == 1


async def test_a_sender_not_on_the_allowlist_gets_a_polite_no(channels, settings, monkeypatch, count):
    allowed = number()
    monkeypatch.setattr(settings.twilio, "allowed_numbers", [allowed])
    reply = said(await channels.twilio(whatsapp("Delete production", number())))
    assert reply.startswith("Sorry") and await count(Task) == 0
    assert said(await channels.twilio(whatsapp("Add a logo", allowed))).startswith("Task #")


async def test_a_flooding_sender_is_rate_limited(channels, count):
    from .conftest import RATE

    sender = number()
    replies = [said(await channels.twilio(whatsapp(f"message {i}", sender))) for i in range(RATE + 2)]
    assert all(r for r in replies[:RATE]) and replies[RATE:] == ["", ""]  # no paid answer to a flood
    assert await count(Task) == 1 and await count(Message) == RATE - 1
    said(await channels.twilio(whatsapp("someone else", number())))  # others are not affected
    assert await count(Task) == 2


async def test_a_malformed_body_is_a_400(channels, count):
    form = whatsapp("no sender", number())
    del form["From"]
    r = await channels.twilio(form)
    assert r.status_code == 400 and r.json()["code"] == "malformed_request"
    assert await count(Delivery) == 0


async def test_a_status_change_sends_exactly_one_twilio_message(
    channels, runtime, factory, client, drain, fake_twilio
):
    sender = number()
    said(await channels.twilio(whatsapp("Fix typo on the landing page", sender)))
    task = (await _tasks(runtime))[-1]
    _, agent = await factory.member("agent")
    assert (await client.post(f"/api/v1/tasks/{task.id}/claim", headers=agent)).status_code == 200
    await drain()
    await drain()
    assert len(fake_twilio.calls) == 1
    call = fake_twilio.calls[0]
    assert call["host"] == "api.twilio.com"
    assert call["path"] == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert call["form"]["To"] == f"whatsapp:{sender}" and call["form"]["From"] == TWILIO_FROM
    assert call["form"]["Body"] == (
        f"Task #{task.id} (Fix typo on the landing page) was picked up by an agent and is being worked on."
    )
    # The job running again (a retry after a crash) finds the message sent and sends nothing.
    notifier: ChannelNotifier = runtime.services.notifier
    again = await notifier.notify(await task_by_id(runtime, task.id), "IN_PROGRESS", "ignored")
    assert again == {"skipped": "nothing new to tell"} and len(fake_twilio.calls) == 1


async def test_twilio_busy_asks_the_queue_to_retry_after_its_delay(
    channels, runtime, factory, client, fake_twilio
):
    said(await channels.twilio(whatsapp("Retry me", number())))
    task = (await _tasks(runtime))[-1]
    _, agent = await factory.member("agent")
    await client.post(f"/api/v1/tasks/{task.id}/claim", headers=agent)
    notifier: ChannelNotifier = runtime.services.notifier
    fake_twilio.fail_with = (429, {"Retry-After": "7"})
    with pytest.raises(jobs.Retry) as raised:
        await notifier.notify(task, "PENDING", "Task is pending")
    assert raised.value.after == 7
    fake_twilio.fail_with = (503, {})
    with pytest.raises(jobs.Retry):
        await notifier.notify(task, "PENDING", "Task is pending")
    fake_twilio.fail_with = None
    result = await notifier.notify(task, "PENDING", "Task is pending")
    assert result["ok"] is True and len(fake_twilio.calls) == 1
    assert "picked up" in fake_twilio.calls[0]["form"]["Body"]


async def test_end_to_end_the_requester_hears_every_step_in_whatsapp(
    channels, runtime, factory, client, drain, fake_twilio
):
    sender = number()
    said(await channels.twilio(whatsapp("Add a README", sender)))
    task_id = (await _tasks(runtime))[-1].id
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200
    await drain()
    r = await client.post(f"/api/v1/tasks/{task_id}/messages", json={"body": "Which license?"}, headers=agent)
    assert r.status_code in (200, 201), r.text
    await drain()
    said(await channels.twilio(whatsapp("MIT please", sender)))
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": {"README.md": "# hi\n"}}, headers=agent
    )
    assert r.status_code == 201, r.text
    await drain()
    assert (await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)).status_code == 200
    await drain()
    bodies = [c["form"]["Body"] for c in fake_twilio.calls]
    assert {c["form"]["To"] for c in fake_twilio.calls} == {f"whatsapp:{sender}"}
    assert len(bodies) == 4, bodies
    assert "picked up" in bodies[0]
    assert bodies[1] == f"Task #{task_id}: the agent asks:\nWhich license?"
    assert "ready for review" in bodies[2]
    assert "done and merged" in bodies[3]
    async with runtime.sessions() as session:
        answer = await session.scalar(
            select(Message.body).where(Message.task_id == task_id, Message.source == "whatsapp")
        )
    assert answer == "MIT please"


async def _tasks(runtime) -> list[Task]:
    async with runtime.sessions() as session:
        return list((await session.execute(select(Task).order_by(Task.id))).scalars())


async def test_a_leading_number_that_is_not_their_task_is_just_a_request(channels, runtime):
    sender = number()
    reply = said(await channels.twilio(whatsapp("#1 priority: the checkout is down", sender)))
    task = (await _tasks(runtime))[-1]
    assert reply == f"Task #{task.id} created: #1 priority: the checkout is down"
