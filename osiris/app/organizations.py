"""Organizations and the channel accounts that route inbound messages to them: the operator's business.

An organization's own admins manage its users, tokens and repositories (accounts.py,
repositories.py); creating organizations and deciding which Twilio number, Slack team, email
domain, GitHub installation or repository and Telegram bot belongs to which is for the superuser.
An organization's admins tune their own accounts' settings (allowed senders, repository, keywords).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import db, repositories
from osiris.app.actors import Actor
from osiris.app.errors import Conflict, Forbidden, InvalidInput, NotFound, UnknownRepository
from osiris.app.models import ChannelAccount, Organization, Role
from osiris.app.schemas import ChannelAccountSettings

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
CHANNELS = ("whatsapp", "slack", "email", "github", "telegram")


async def list_organizations(session: AsyncSession) -> Sequence[Organization]:
    return (await session.execute(select(Organization).order_by(Organization.id))).scalars().all()


async def create_organization(session: AsyncSession, *, slug: str, name: str | None = None) -> Organization:
    slug = slug.strip().lower()
    if not SLUG.match(slug):
        raise InvalidInput(
            "a slug is 1-64 lower-case letters, digits or '-', starting with a letter or digit"
        )
    name = (name or slug).strip()
    if not name or len(name) > 200:
        raise InvalidInput("a name is 1-200 characters")
    org = await db.insert_new(
        session, Organization, {"slug": slug, "name": name}, index_elements=[Organization.slug]
    )
    if org is None:
        raise Conflict(f"organization {slug!r} exists")
    return org


async def organization_by_slug(session: AsyncSession, slug: str) -> Organization:
    org = await session.scalar(select(Organization).where(Organization.slug == slug))
    if org is None:
        raise NotFound(f"no organization {slug!r}")
    return org


# --- channel accounts ----------------------------------------------------------------------------


def normalize_account(channel: str, account: str) -> str:
    """The form adapters put on an Inbound (intake.Inbound.accounts), so a lookup is one equality."""
    value = account.strip()
    if channel == "whatsapp":
        value = value.removeprefix("whatsapp:").replace(" ", "")
    elif channel == "email":
        value = value.rpartition("@")[2].lower()  # a domain; "osiris@b.example" and "@b.example" too
    elif channel in ("github", "telegram"):
        value = value.lstrip("@").lower()
    return value


async def list_channel_accounts(session: AsyncSession, *, org_id: int | None) -> Sequence[ChannelAccount]:
    """All of them (org_id None: the operator), or one organization's."""
    stmt = select(ChannelAccount).order_by(ChannelAccount.channel, ChannelAccount.account)
    if org_id is not None:
        stmt = stmt.where(ChannelAccount.org_id == org_id)
    return (await session.execute(stmt)).scalars().all()


async def add_channel_account(
    session: AsyncSession, *, org_id: int, channel: str, account: str
) -> ChannelAccount:
    if channel not in CHANNELS:
        raise InvalidInput(f"channel is one of {', '.join(CHANNELS)}")
    value = normalize_account(channel, account)
    if not value or len(value) > 200:
        raise InvalidInput("an account is 1-200 characters")
    row = await db.insert_new(
        session,
        ChannelAccount,
        {"org_id": org_id, "channel": channel, "account": value},
        constraint="uq_channel_accounts_channel_account",
    )
    if row is None:
        raise Conflict(f"{channel} account {value!r} is already mapped")
    return row


async def remove_channel_account(session: AsyncSession, account_id: int) -> ChannelAccount:
    row = await session.get(ChannelAccount, account_id)
    if row is None:
        raise NotFound(f"channel account {account_id} not found")
    await session.execute(delete(ChannelAccount).where(ChannelAccount.id == account_id))
    return row


async def update_channel_account_settings(
    session: AsyncSession, actor: Actor, account_id: int, settings: ChannelAccountSettings
) -> ChannelAccount:
    """Replace an account's settings: the operator's for any account, an admin's for their own.

    Another organization's account is not found, as if it did not exist. A `repo` must be a
    repository registered to the account's organization.
    """
    if not actor.superuser and actor.role != Role.ADMIN:
        raise Forbidden("only an admin changes channel settings")
    row = await session.get(ChannelAccount, account_id, with_for_update=True)
    if row is None or (not actor.superuser and row.org_id != actor.org_id):
        raise NotFound(f"channel account {account_id} not found")
    if settings.repo is not None and (await repositories.owner_of(session, settings.repo) != row.org_id):
        raise UnknownRepository(f"no repository {settings.repo!r} in this organization")
    row.settings = settings.stored()
    await session.flush()
    return row


async def account_for_inbound(
    session: AsyncSession, channel: str, accounts: Sequence[str]
) -> ChannelAccount | None:
    """The mapped row of the first of `accounts` (most specific first), if any."""
    if not accounts:
        return None
    rows = await session.execute(
        select(ChannelAccount).where(ChannelAccount.channel == channel, ChannelAccount.account.in_(accounts))
    )
    found = {row.account: row for row in rows.scalars()}
    return next((found[a] for a in accounts if a in found), None)
