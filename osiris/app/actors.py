"""Who is acting: a user of one organization with one role, or the system itself."""

from __future__ import annotations

from dataclasses import dataclass

from osiris.app.models import HUMAN_ROLES, Role


@dataclass(frozen=True, slots=True)
class Actor:
    org_id: int
    user_id: int | None
    name: str
    role: Role | None  # None: the system (lease sweeper, webhooks acting on their own) or a requester
    requester: bool = False  # a person who asked through a channel; has no account
    superuser: bool = False  # the operator: may manage organizations (only through their endpoints)
    # An OAuth access token's grant (osiris/app/oauth.py): the scopes it carries and the resource
    # (RFC 8707 audience) it was issued for. None: not limited (API tokens, JWTs, portal sessions).
    scopes: frozenset[str] | None = None
    audience: str | None = None

    @property
    def rule_role(self) -> Role | str:
        """The name RULES knows this actor by."""
        if self.requester:
            return "requester"
        return self.role if self.role is not None else "system"

    @property
    def is_human(self) -> bool:
        return self.role in HUMAN_ROLES

    @property
    def is_agent(self) -> bool:
        return self.role is Role.AGENT

    @property
    def is_system(self) -> bool:
        return self.role is None and not self.requester


def system_actor(org_id: int, name: str = "system") -> Actor:
    return Actor(org_id=org_id, user_id=None, name=name, role=None)


def requester_actor(org_id: int, address: str) -> Actor:
    """Someone who asked through a chat channel: may follow up on and cancel their own request."""
    return Actor(org_id=org_id, user_id=None, name=address, role=None, requester=True)
