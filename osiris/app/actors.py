"""Who is acting: a user of one organization with one role, or the system itself."""

from __future__ import annotations

from dataclasses import dataclass

from osiris.app.models import HUMAN_ROLES, Role


@dataclass(frozen=True, slots=True)
class Actor:
    org_id: int
    user_id: int | None
    name: str
    role: Role | None  # None: the system (lease sweeper, webhooks acting on their own)

    @property
    def is_human(self) -> bool:
        return self.role in HUMAN_ROLES

    @property
    def is_agent(self) -> bool:
        return self.role is Role.AGENT

    @property
    def is_system(self) -> bool:
        return self.role is None


def system_actor(org_id: int, name: str = "system") -> Actor:
    return Actor(org_id=org_id, user_id=None, name=name, role=None)
