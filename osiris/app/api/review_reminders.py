"""REST: a person's own chat addresses (where review reminders go, and from which chat replies may
approve), and an admin's review-reminder policy (the organization's interval, quiet hours and Slack
review channel; a repository's interval and channel)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from osiris.app import reminders, reviewer_channels
from osiris.app.actors import Actor
from osiris.app.auth import ActorDep, AdminDep, SessionDep
from osiris.app.errors import Forbidden
from osiris.app.models import HUMAN_ROLES

router = APIRouter(prefix="/api/v1", tags=["review reminders"])

Channel = Field(pattern="^(slack|email|whatsapp|telegram)$", description="slack, email, whatsapp or telegram")


class ChannelAddressCreate(BaseModel):
    channel: str = Channel
    address: str = Field(
        min_length=1,
        max_length=300,
        description="Slack `<team>:<user>`, an email address, a WhatsApp number (+15551234567), a Telegram user id",
    )


class ChannelAddressRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    channel: str
    address: str
    verified_at: datetime | None


class ChannelAddressCreated(ChannelAddressRead):
    code: str = Field(description="send `verify <code>` from this address to verify it; empty once verified")


SlackChannel = Field(
    default=None,
    max_length=100,
    description="a Slack channel every reminder is also posted to, `<team id>:<channel id>` "
    "(e.g. T0123ABCD:C0456EFGH; the bot must be a member); null: none",
)


class ReminderPolicy(BaseModel):
    remind_after_seconds: int | None = Field(
        default=None, ge=0, description="the organization's interval; null: the deployment's; 0: off"
    )
    quiet_hours_start: time | None = None
    quiet_hours_end: time | None = None
    timezone: str = Field(default="UTC", max_length=64)
    slack_channel: str | None = SlackChannel


class RepositoryReminder(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    remind_after_seconds: int | None = Field(
        default=None, ge=0, description="null: the organization's; 0: off"
    )
    slack_channel: str | None = SlackChannel


async def _person(actor: ActorDep) -> Actor:
    """A dependency, so an agent is refused before its request is even validated (403, not 422)."""
    if actor.role not in HUMAN_ROLES:
        raise Forbidden("only reviewers and admins have chat addresses for reviews")
    return actor


PersonDep = Annotated[Actor, Depends(_person)]


@router.get("/me/channels", response_model=list[ChannelAddressRead])
async def list_my_channels(actor: PersonDep, session: SessionDep) -> list[ChannelAddressRead]:
    """Your chat addresses, verified or not."""
    return [ChannelAddressRead.model_validate(r) for r in await reviewer_channels.mine(session, actor)]


@router.post("/me/channels", response_model=ChannelAddressCreated, status_code=201)
async def add_my_channel(
    body: ChannelAddressCreate, actor: PersonDep, session: SessionDep
) -> ChannelAddressCreated:
    """Register one of your addresses; send `verify <code>` from it to OSIRIS on that channel."""
    row, code = await reviewer_channels.register(session, actor, channel=body.channel, address=body.address)
    return ChannelAddressCreated(
        id=row.id, channel=row.channel, address=row.address, verified_at=row.verified_at, code=code
    )


@router.delete("/me/channels", status_code=204)
async def remove_my_channel(
    actor: PersonDep,
    session: SessionDep,
    channel: str = Query(pattern="^(slack|email|whatsapp|telegram)$"),
    address: str = Query(min_length=1, max_length=300),
) -> Response:
    await reviewer_channels.remove(session, actor, channel=channel, address=address)
    return Response(status_code=204)


@router.put("/review-reminders", response_model=ReminderPolicy)
async def set_reminder_policy(body: ReminderPolicy, actor: AdminDep, session: SessionDep) -> ReminderPolicy:
    """Admins: the organization's reminder interval and quiet hours (both ends, or neither)."""
    quiet = (
        (body.quiet_hours_start, body.quiet_hours_end)
        if body.quiet_hours_start is not None and body.quiet_hours_end is not None
        else None
    )
    org = await reminders.set_org_policy(
        session,
        actor,
        remind_after_seconds=body.remind_after_seconds,
        quiet_hours=quiet,
        timezone=body.timezone,
        slack_channel=body.slack_channel,
    )
    return ReminderPolicy(
        remind_after_seconds=org.review_remind_after_seconds,
        quiet_hours_start=org.quiet_hours_start,
        quiet_hours_end=org.quiet_hours_end,
        timezone=org.timezone,
        slack_channel=org.review_slack_channel,
    )


@router.put("/review-reminders/repository", response_model=RepositoryReminder)
async def set_repository_reminder(
    body: RepositoryReminder, actor: AdminDep, session: SessionDep
) -> RepositoryReminder:
    """Admins: one repository's interval, over the organization's."""
    repo = await reminders.set_repository_interval(
        session,
        actor,
        name=body.name,
        remind_after_seconds=body.remind_after_seconds,
        slack_channel=body.slack_channel,
    )
    return RepositoryReminder(
        name=repo.name,
        remind_after_seconds=repo.review_remind_after_seconds,
        slack_channel=repo.review_slack_channel,
    )
