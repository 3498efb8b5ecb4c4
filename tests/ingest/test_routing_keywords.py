"""Routing from a chat channel: words in a request label the task with skills."""

from __future__ import annotations

from sqlalchemy import select

from osiris.app.models import Task

from .ingest_helpers import number, said, whatsapp


async def test_channel_keywords_set_the_tasks_skills(channels, runtime, monkeypatch):
    keywords = {"postgres": "sql", "database": "sql", "front end": "frontend"}
    monkeypatch.setattr(runtime.settings.routing, "skill_keywords", keywords)
    said(await channels.twilio(whatsapp("The database export is slow on the front end", number())))
    said(await channels.twilio(whatsapp("Please update the README", number())))
    async with runtime.sessions() as session:
        tasks = (await session.execute(select(Task).order_by(Task.id))).scalars().all()
    assert [t.skills for t in tasks[-2:]] == [["frontend", "sql"], []]
