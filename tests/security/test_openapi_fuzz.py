"""Schemathesis against the app's own OpenAPI description: no 5xx, responses match the schema.

Every operation is fuzzed twice per example, as an agent (opaque token) and as a reviewer (JWT), on a
live app in this process; the examples are derandomized so that CI runs the same ones every time.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from osiris.app import security

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture
async def credentials(factory, live_app):
    agent = await factory.user("agent")
    reviewer = await factory.user("reviewer")
    jwt = security.issue_jwt(
        user_id=reviewer.id,
        org_id=reviewer.org_id,
        role="reviewer",
        key=live_app.settings.signing_key(),
        ttl_seconds=600,
    )
    # something to find: a task in review with one version, so ids 1.. exist
    return {
        "agent": {"Authorization": f"Bearer {await factory.token(agent)}"},
        "reviewer": {"Authorization": f"Bearer {jwt}"},
    }


def test_no_server_errors_and_responses_match_the_schema(credentials, live_app, record_property):
    """Every operation of /openapi.json, 20 generated requests each, sent as an agent and as a
    reviewer: no 5xx, documented responses match their schema and content type."""
    calls = 0
    schema = schemathesis.openapi.from_url(live_app.url + "/openapi.json")
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            nonlocal calls
            for headers in credentials.values():
                calls += 1
                case.call_and_validate(base_url=live_app.url, headers=headers, checks=CHECKS)

        try:
            fuzz()
        except BaseException as exc:  # one operation's failure must not hide another's
            if not isinstance(exc, Exception | BaseExceptionGroup):
                raise
            found = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
            failures[operation.label] = "; ".join(f"{e.__class__.__name__}: {e}"[:300] for e in found)
    record_property("operations", len(operations))
    record_property("requests", calls)
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
