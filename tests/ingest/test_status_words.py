"""A cancelled task (API value `REJECTED`) reads "cancelled" in every chat reply and notification, the
portal's own word (osiris/app/status_labels.py): the status command, a follow-up or a second cancel on
a closed task, and the requester's notice when a supervisor cancels."""

from __future__ import annotations

from sqlalchemy import select

from osiris.app.models import Task, TaskStatus
from osiris.app.status_labels import STATUS_LABELS, status_label
from osiris.ingest.intake import STATUS_WORDS

from .ingest_helpers import number, said, whatsapp

OLD_WORDS = ("closed without changes", "REJECTED", "rejected")


async def _newest(runtime) -> Task:
    async with runtime.sessions() as session:
        return (await session.execute(select(Task).order_by(Task.id.desc()).limit(1))).scalar_one()


def test_every_status_has_one_label_and_chat_uses_it_for_the_closed_states():
    assert set(STATUS_LABELS) == {s.value for s in TaskStatus} == set(STATUS_WORDS)
    assert status_label(TaskStatus.REJECTED) == status_label("REJECTED") == "Cancelled"
    assert STATUS_WORDS["REJECTED"] == "cancelled" and STATUS_WORDS["DONE"] == "done"
    assert status_label("SOMETHING_NEW") == "SOMETHING NEW"  # never a KeyError in a reply


async def test_replies_about_a_cancelled_task_say_cancelled(channels, runtime):
    sender = number()
    said(await channels.twilio(whatsapp("Rename the app", sender)))
    task = await _newest(runtime)
    assert said(await channels.twilio(whatsapp(f"cancel #{task.id}", sender))) == (
        f"Task #{task.id} cancelled: Rename the app"
    )
    replies = [
        said(await channels.twilio(whatsapp(f"status #{task.id}", sender))),
        said(await channels.twilio(whatsapp(f"cancel #{task.id}", sender))),
        said(await channels.twilio(whatsapp(f"#{task.id} one more thing", sender))),
    ]
    assert replies == [
        f"Task #{task.id} (Rename the app) is cancelled.",
        f"Task #{task.id} is already cancelled.",
        f"Task #{task.id} is already cancelled; send a new message for a new request.",
    ]
    assert not any(old in reply for reply in replies for old in OLD_WORDS)


async def test_the_requester_hears_cancelled_when_a_supervisor_cancels(
    channels, runtime, factory, client, drain, fake_twilio
):
    sender = number()
    said(await channels.twilio(whatsapp("Fix the footer", sender)))
    task = await _newest(runtime)
    _, admin = await factory.member("admin")
    r = await client.post(
        f"/api/v1/tasks/{task.id}/cancel", json={"reason": "a duplicate of #1"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["status"] == "REJECTED"  # the API value stays
    await drain()
    bodies = [c["form"]["Body"] for c in fake_twilio.calls if c["form"]["To"] == f"whatsapp:{sender}"]
    assert bodies == [f"Task #{task.id} (Fix the footer) was cancelled. Reason: a duplicate of #1"]
