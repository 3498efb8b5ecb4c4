"""Fixtures of the local git host (the embedded default code host): a folder's conftest imports them."""

from __future__ import annotations

import secrets

import pytest

from osiris.github_bridge.local_git import LocalGitHost


@pytest.fixture
def host(runtime) -> LocalGitHost:
    found = runtime.services.code_host
    assert isinstance(found, LocalGitHost)
    return found


@pytest.fixture
def repo_name() -> str:
    # A repository per test: task ids restart with every test's fresh tables, branch names would not.
    return f"t-{secrets.token_hex(4)}"
