"""Routing: which agent may take which pending task, and in what order they are offered.

A task's skills must all be among the agent's (a task with none is open to all); a task reserved
for one agent can be claimed by that agent only. Both rules are SQL conditions, used by the pending
queue here and inside the single-statement claims in `lifecycle`, so the database decides races.

Order: effective priority, then age. A pending task gains one priority step for every
`routing_aging_seconds` it has waited, at most `routing_aging_max_boost` steps:

    effective = priority + least(floor(age / aging_seconds), max_boost)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from osiris.app.actors import Actor
from osiris.app.config import Settings
from osiris.app.errors import InvalidInput
from osiris.app.models import Task, User

_SKILL = re.compile(r"^[a-z0-9][a-z0-9._+#-]{0,63}$")
MAX_SKILLS = 32

# The same rules as SQL text, for the prebuilt claim statements (binds: :actor_id, :aging_*).
CLAIMABLE_SQL = (
    "skills <@ (SELECT u.skills FROM users u WHERE u.id = :actor_id)"
    " AND (reserved_for_id IS NULL OR reserved_for_id = :actor_id)"
)
EFFECTIVE_PRIORITY_SQL = (
    "priority + LEAST(floor(extract(epoch FROM now() - created_at) / CAST(:aging_seconds AS integer)),"
    " CAST(:aging_max_boost AS integer))"
)


def normalize_skills(skills: Iterable[str]) -> list[str]:
    """Lower-case, unique, sorted; refuse what is not a plain label."""
    out = sorted({s.strip().lower() for s in skills if s.strip()})
    bad = [s for s in out if not _SKILL.match(s)]
    if bad:
        raise InvalidInput(f"invalid skill(s): {', '.join(bad)}; use letters, digits and . _ + # -")
    if len(out) > MAX_SKILLS:
        raise InvalidInput(f"at most {MAX_SKILLS} skills")
    return out


def skills_from_text(keywords: dict[str, str], text: str) -> list[str]:
    """The skills a channel request asks for by its words (settings: routing_skill_keywords)."""
    lowered = text.lower()
    words = set(re.findall(r"[a-z0-9.+#-]+", lowered))
    # One word must match a whole word ("go" is not in "good"); a phrase matches as a substring.
    hits = (
        skill
        for word, skill in keywords.items()
        if (word.lower() in words if " " not in word else word.lower() in lowered)
    )
    return normalize_skills(hits)


def claimable_by(actor: Actor) -> ColumnElement[bool]:
    """The routing condition for one agent, as a SQLAlchemy expression."""
    mine = select(User.skills).where(User.id == actor.user_id).scalar_subquery()
    return and_(
        Task.skills.contained_by(mine),
        or_(Task.reserved_for_id.is_(None), Task.reserved_for_id == actor.user_id),
    )


@dataclass(frozen=True)
class Aging:
    """How a waiting task gains priority: one step per `seconds` waited, at most `max_boost` steps."""

    seconds: int
    max_boost: int

    @classmethod
    def of(cls, settings: Settings) -> Aging:
        """The deployment's aging: the one place `routing_aging_*` are read."""
        return cls(settings.routing.aging_seconds, settings.routing.aging_max_boost)

    def params(self) -> dict[str, int]:
        """The binds of `EFFECTIVE_PRIORITY_SQL`."""
        return {"aging_seconds": self.seconds, "aging_max_boost": self.max_boost}


def effective_priority(aging: Aging) -> ColumnElement[Any]:
    age = func.extract("epoch", func.now() - Task.created_at)
    return Task.priority + func.least(func.floor(age / aging.seconds), aging.max_boost)
