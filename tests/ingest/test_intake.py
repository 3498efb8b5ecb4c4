"""The intake rules and the channels' text handling, without HTTP."""

from __future__ import annotations

import asyncio
import email.utils
from datetime import UTC, datetime, timedelta

from osiris.app.config import Settings
from osiris.app.models import Delivery, Task
from osiris.ingest.email import clean_subject, html_to_text, strip_quoted
from osiris.ingest.intake import Command, Inbound, Policy, parse_command, redact, title_from
from osiris.ingest.notify import retry_after
from osiris.ingest.slack import plain_text

from .ingest_helpers import number, said, whatsapp


def test_commands_are_whole_messages_only():
    assert parse_command("status") == Command("status", None)
    assert parse_command("  Cancel #12. ") == Command("cancel", 12)
    assert parse_command("status # 7") == Command("status", 7)
    assert parse_command("cancel the nightly export job") is None
    assert parse_command("statuses of orders look wrong") is None


def test_priority_comes_from_keywords_and_the_highest_wins():
    policy = Policy.from_settings(Settings(db={"url": "postgresql://x/y"}, auth={"secret_key": "k"}))
    assert policy.priority("Fix the footer") == 1
    assert policy.priority("low priority: tidy the README") == 0
    assert policy.priority("important, and ASAP") == 3
    assert policy.priority("the urgently-named variable") == 1  # whole words only


def test_allowlists_match_each_channels_key():
    settings = Settings(
        db={"url": "postgresql://x/y"},
        auth={"secret_key": "k"},
        twilio={"allowed_numbers": ["whatsapp:+15550001111"]},
        email={"allowed_domains": ["Corp.Example", "friend@else.example"]},
    )
    policy = Policy.from_settings(settings)

    def inbound(channel: str, *keys: str) -> Inbound:
        return Inbound(channel, channel, "id", "sender", "text", "thread", allow_keys=keys)

    assert policy.allows(inbound("whatsapp", "+15550001111"))
    assert not policy.allows(inbound("whatsapp", "+15550002222"))
    assert policy.allows(inbound("email", "ann@corp.example", "corp.example"))
    assert policy.allows(inbound("email", "friend@else.example", "else.example"))
    assert not policy.allows(inbound("email", "foe@else.example", "else.example"))
    assert policy.allows(inbound("slack", "T1"))  # no Slack allowlist: everyone


def test_titles_are_the_first_line_cut_at_a_word():
    assert title_from("\n\n  Fix login \nmore") == "Fix login"
    long = "word " * 40
    assert len(title_from(long)) <= 121 and title_from(long).endswith("…")


def test_text_cleanup():
    assert plain_text("<@U123> see <https://x.example/a|the doc> &amp; <mailto:a@b.c>") == (
        "see the doc (https://x.example/a) & mailto:a@b.c"
    )
    assert html_to_text("<div>a<br>b</div><p>c &lt; d</p>") == "a\nb\n\nc < d"
    assert strip_quoted("new words\n\nOn Mon, 1 Jan, Ann wrote:\n> old") == "new words"
    assert strip_quoted("top\n> quoted\nbottom") == "top\nbottom"
    assert clean_subject("RE: Fwd: [OSIRIS #4] Colours") == "Colours"
    assert redact("whatsapp:+15551234567") == "whatsapp:+…4567"
    assert redact("alice.smith@example.com") == "….com"  # neither the name nor the domain


def test_retry_after_reads_seconds_and_dates():
    assert retry_after({"Retry-After": "12"}) == 12
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert 80 <= retry_after({"Retry-After": later}) <= 91
    assert retry_after({}) == 30


async def test_concurrent_twins_of_one_message_make_one_task(channels, factory, count):
    await factory.org()  # as at startup: the organization exists before webhooks arrive
    form = whatsapp("Twins", number())
    first, second = await asyncio.gather(channels.twilio(form), channels.twilio(form))
    assert said(first) == said(second)
    assert await count(Task) == 1 and await count(Delivery) == 1
