"""People's own chat addresses (`user_channels`): where review reminders go, and the only way a chat
message acts as a user.

An address is registered by its owner (REST `/api/v1/me/channels`), which gives a one-time code; the
person then sends `verify <code>` from that address on that channel, and only then is it verified. A
message from an address that is not verified never maps to a user: it is a requester like any other.
A verified address belongs to one user in the whole deployment (a partial unique index).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app.actors import Actor
from osiris.app.errors import Conflict, Forbidden, InvalidInput, NotFound
from osiris.app.models import HUMAN_ROLES, User, UserChannel

CHANNELS = ("slack", "email", "whatsapp", "telegram")
_SLACK = re.compile(r"T[A-Z0-9]{2,30}:[UW][A-Z0-9]{2,30}")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
_EMAIL = re.compile(r"[^@\s<>]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
_TELEGRAM = re.compile(r"[1-9][0-9]{0,19}")
_VERIFY = re.compile(r"verify ([0-9a-f]{8})", re.IGNORECASE)


def normalize(channel: str, address: str) -> str:
    """An address in the form the channel's messages carry as their sender (intake's `Inbound.sender`)."""
    value = " ".join(str(address).split())
    if channel == "slack":  # workspace and user: "T0123:U0456"
        if not _SLACK.fullmatch(value):
            raise InvalidInput("a Slack address is <team id>:<user id>, e.g. T0123ABCD:U0456EFGH")
        return value
    if channel == "email":
        value = value.lower()
        if not _EMAIL.fullmatch(value):
            raise InvalidInput("not an email address")
        return value
    if channel == "whatsapp":
        number = value.removeprefix("whatsapp:").replace(" ", "")
        if not _PHONE.fullmatch(number):
            raise InvalidInput("a WhatsApp number is in international form, e.g. +15551234567")
        return f"whatsapp:{number}"
    if channel == "telegram":
        user_id = value.removeprefix("telegram:")
        if not _TELEGRAM.fullmatch(user_id):
            raise InvalidInput("a Telegram address is your numeric user id (ask @userinfobot)")
        return f"telegram:{user_id}"
    raise InvalidInput(f"channel is one of {', '.join(CHANNELS)}")


_SLACK_CHANNEL = re.compile(r"T[A-Z0-9]{2,30}:[CG][A-Z0-9]{2,30}")


def normalize_slack_channel(value: str | None) -> str | None:
    """A Slack review channel (an organization's or a repository's) as `<team id>:<channel id>`,
    the form a reminder's target takes (`T0123ABCD:C0456EFGH`); None or blank: none."""
    if value is None or not value.strip():
        return None
    found = " ".join(value.split())
    if not _SLACK_CHANNEL.fullmatch(found):
        raise InvalidInput("a Slack review channel is <team id>:<channel id>, e.g. T0123ABCD:C0456EFGH")
    return found


def _hash(code: str) -> str:
    return hashlib.sha256(code.lower().encode()).hexdigest()


async def register(
    session: AsyncSession, actor: Actor, *, channel: str, address: str
) -> tuple[UserChannel, str]:
    """Add (or renew the code of) one of the caller's addresses; returns the row and the code to send."""
    if actor.user_id is None or actor.role not in HUMAN_ROLES:
        raise Forbidden("only reviewers and admins register chat addresses")
    address = normalize(channel, address)
    taken = await session.scalar(
        select(UserChannel.user_id).where(
            UserChannel.channel == channel,
            UserChannel.address == address,
            UserChannel.verified_at.is_not(None),
        )
    )
    if taken is not None and taken != actor.user_id:
        raise Conflict("that address is already registered to someone")
    row = await session.scalar(
        select(UserChannel).where(
            UserChannel.user_id == actor.user_id,
            UserChannel.channel == channel,
            UserChannel.address == address,
        )
    )
    code = secrets.token_hex(4)
    if row is None:
        row = UserChannel(org_id=actor.org_id, user_id=actor.user_id, channel=channel, address=address)
        session.add(row)
    if row.verified_at is None:
        row.verify_code_hash = _hash(code)
    await session.flush()
    return row, code if row.verified_at is None else ""


async def mine(session: AsyncSession, actor: Actor) -> Sequence[UserChannel]:
    stmt = select(UserChannel).where(UserChannel.user_id == actor.user_id).order_by(UserChannel.id)
    return (await session.execute(stmt)).scalars().all()


async def remove(session: AsyncSession, actor: Actor, *, channel: str, address: str) -> None:
    address = normalize(channel, address)
    result = await session.execute(
        delete(UserChannel).where(
            UserChannel.user_id == actor.user_id,
            UserChannel.channel == channel,
            UserChannel.address == address,
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("you have no such address")


def verify_code_in(text: str) -> str | None:
    """`verify <code>` (the whole message, any spacing): the code, else None. Linear: at most 64
    characters are looked at, as intake's commands."""
    short = " ".join(text.split())
    if len(short) > 64:
        return None
    m = _VERIFY.fullmatch(short)
    return m.group(1).lower() if m else None


async def verify(session: AsyncSession, *, channel: str, sender: str, code: str) -> UserChannel | None:
    """The message came from `sender` on `channel` (the channel checked its signature): a pending
    registration of exactly that address with this code becomes verified."""
    rows = (
        await session.execute(
            select(UserChannel)
            .where(
                UserChannel.channel == channel,
                UserChannel.address == sender,
                UserChannel.verified_at.is_(None),
                UserChannel.verify_code_hash.is_not(None),
            )
            .with_for_update()
        )
    ).scalars()
    wanted = _hash(code)
    for row in rows:
        if hmac.compare_digest(row.verify_code_hash or "", wanted):
            taken = await session.scalar(
                select(UserChannel.id).where(
                    UserChannel.channel == channel,
                    UserChannel.address == sender,
                    UserChannel.verified_at.is_not(None),
                )
            )
            if taken is not None:
                return None
            row.verified_at, row.verify_code_hash = datetime.now(UTC), None
            await session.flush()
            return row
    return None


async def user_for(session: AsyncSession, *, channel: str, sender: str) -> User | None:
    """The active user whose verified address this is; None for anyone else."""
    return await session.scalar(
        select(User)
        .join(UserChannel, UserChannel.user_id == User.id)
        .where(
            UserChannel.channel == channel,
            UserChannel.address == sender,
            UserChannel.verified_at.is_not(None),
            User.is_active.is_(True),
        )
    )


async def verified_addresses(
    session: AsyncSession, user_ids: Iterable[int]
) -> dict[int, list[tuple[str, str]]]:
    ids = list(user_ids)
    found: dict[int, list[tuple[str, str]]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = await session.execute(
        select(UserChannel.user_id, UserChannel.channel, UserChannel.address)
        .where(UserChannel.user_id.in_(ids), UserChannel.verified_at.is_not(None))
        .order_by(UserChannel.id)
    )
    for user_id, channel, address in rows:
        found[user_id].append((channel, address))
    return found
