"""Organizations: the operator (a superuser) creates them and their first admins; each organization's
admins manage only their own users, tokens, repositories; a task names only its organization's
repositories. Real HTTP through the ASGI app, real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from osiris import cli
from osiris.app import accounts, db, repositories
from osiris.app.models import ApiToken, Organization, Repository, Role, Task, User

PASSWORD = "operator-password-1"


async def superuser(factory) -> tuple[User, dict]:
    org = await factory.org()
    async with db.transaction(factory.runtime.sessions) as session:
        user = await accounts.create_user(
            session, org_id=org.id, username="op", role=Role.ADMIN, password=PASSWORD, is_superuser=True
        )
    return user, {"Authorization": f"Bearer {await factory.token(user)}"}


async def login(client, username: str, password: str) -> dict:
    r = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def count(runtime, model, *where) -> int:
    async with runtime.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def test_the_first_admin_is_the_operator_and_an_older_deployment_gets_one(runtime, factory):
    async with db.transaction(runtime.sessions) as session:
        assert await accounts.bootstrap_admin(session, password="first-admin-pw") is None
        admin = await accounts.find_user(session, "admin")
        assert admin is not None and admin.is_superuser and admin.role == "admin"
        # Before superusers existed: an admin, no superuser. The next start promotes the oldest admin.
        admin.is_superuser = False
        await session.flush()
        assert await accounts.bootstrap_admin(session, password=None) is None
        await session.refresh(admin)
        assert admin.is_superuser
        with pytest.raises(Exception, match="a superuser must be an admin"):
            await accounts.create_user(
                session, org_id=admin.org_id, username="bot", role=Role.AGENT, is_superuser=True
            )


async def test_the_operator_creates_an_organization_and_its_admin_who_stays_inside_it(
    client, factory, runtime
):
    op, op_auth = await superuser(factory)
    me = (await client.get("/api/v1/agent/me", headers=op_auth)).json()
    assert me["is_superuser"] is True and me["role"] == "admin"

    # The default organization's world: an agent with a token, a task, a repository.
    home_agent, home_auth = await factory.member("agent")
    home_task = (await client.post("/api/v1/tasks", json={"title": "home work"}, headers=home_auth)).json()
    home_repo = next(r for r in (await client.get("/api/v1/repositories", headers=home_auth)).json())
    async with runtime.sessions() as session:
        home_token = await session.scalar(select(ApiToken.id).where(ApiToken.user_id == home_agent.id))

    r = await client.post("/api/v1/organizations", json={"slug": "beta", "name": "Beta Ltd"}, headers=op_auth)
    assert r.status_code == 201, r.text
    assert (r.json()["slug"], r.json()["name"]) == ("beta", "Beta Ltd")
    r = await client.post("/api/v1/organizations", json={"slug": "beta"}, headers=op_auth)
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    slugs = [o["slug"] for o in (await client.get("/api/v1/organizations", headers=op_auth)).json()]
    assert slugs == ["default", "beta"]

    body = {"username": "beta-admin", "role": "admin", "password": "beta-admin-pw"}
    r = await client.post("/api/v1/organizations/beta/users", json=body, headers=op_auth)
    assert r.status_code == 201, r.text
    assert r.json()["is_superuser"] is False
    r = await client.post("/api/v1/organizations/nope/users", json={**body, "username": "x"}, headers=op_auth)
    assert r.status_code == 404
    beta = await login(client, "beta-admin", "beta-admin-pw")

    # Beta's admin sees and changes only Beta.
    assert [u["username"] for u in (await client.get("/api/v1/users", headers=beta)).json()] == ["beta-admin"]
    assert (await client.get("/api/v1/tokens", headers=beta)).json() == []
    assert (await client.delete(f"/api/v1/tokens/{home_token}", headers=beta)).status_code == 404
    r = await client.put(f"/api/v1/users/{home_agent.id}/skills", json={"skills": ["x"]}, headers=beta)
    assert r.status_code == 404
    r = await client.post("/api/v1/tokens", json={"name": "t", "username": home_agent.username}, headers=beta)
    assert r.status_code == 404
    assert (await client.get("/api/v1/tasks", headers=beta)).json()["items"] == []
    r = await client.get(f"/api/v1/tasks/{home_task['id']}", headers=beta)
    assert r.status_code == 404 and r.json()["code"] == "task_not_found"
    assert (await client.get("/api/v1/repositories", headers=beta)).json() == []
    assert (await client.delete(f"/api/v1/repositories/{home_repo['id']}", headers=beta)).status_code == 404
    # … and none of the operator's endpoints.
    for method, path, payload in [
        ("GET", "/api/v1/organizations", None),
        ("POST", "/api/v1/organizations", {"slug": "gamma"}),
        ("POST", "/api/v1/organizations/beta/users", {"username": "sneaky", "role": "admin"}),
        ("POST", "/api/v1/channel-accounts", {"organization": "beta", "channel": "slack", "account": "T9"}),
    ]:
        r = await client.request(method, path, json=payload, headers=beta)
        assert r.status_code == 403 and r.json()["code"] == "forbidden", (method, path, r.text)
    assert await count(runtime, Organization) == 2
    assert await count(runtime, User, User.username == "sneaky") == 0

    # Home data is untouched, and the operator's ordinary admin pages stay in its own organization.
    async with runtime.sessions() as session:
        assert (await session.get(ApiToken, home_token)).revoked_at is None
        assert (await session.get(User, home_agent.id)).skills == []
    users = [u["username"] for u in (await client.get("/api/v1/users", headers=op_auth)).json()]
    assert "beta-admin" not in users and op.username in users
    # An ordinary admin of the default organization is not the operator.
    _, admin = await factory.member("admin")
    assert (await client.get("/api/v1/organizations", headers=admin)).status_code == 403
    assert (await client.get("/api/v1/agent/me", headers=admin)).json()["is_superuser"] is False


async def test_repositories_belong_to_one_organization(client, factory, runtime, monkeypatch):
    beta = await factory.org("beta")
    _, a_admin = await factory.member("admin")
    _, a_agent = await factory.member("agent")
    _, b_admin = await factory.member("admin", org=beta)
    _, b_agent = await factory.member("agent", org=beta)

    r = await client.post("/api/v1/repositories", json={"name": "alpha-app"}, headers=a_admin)
    assert r.status_code == 201, r.text
    alpha_id = r.json()["id"]
    assert (await client.post("/api/v1/repositories", json={"name": "x"}, headers=a_agent)).status_code == 403
    assert [r["name"] for r in (await client.get("/api/v1/repositories", headers=a_agent)).json()] == [
        "alpha-app"
    ]
    # Names are unique in the deployment (one bare repository per name on the local git host).
    r = await client.post("/api/v1/repositories", json={"name": "alpha-app"}, headers=b_admin)
    assert r.status_code == 409

    # Beta names Alpha's repository: refused like a missing one, and nothing is written.
    tasks_before = await count(runtime, Task)
    r = await client.post("/api/v1/tasks", json={"title": "steal", "repo": "alpha-app"}, headers=b_agent)
    assert r.status_code == 422 and r.json()["code"] == "unknown_repository", r.text
    assert "alpha-app" in r.json()["detail"] and "organization" in r.json()["detail"]
    # Beta has no repository yet, and the configured default is not Beta's: it must name one.
    r = await client.post("/api/v1/tasks", json={"title": "where?"}, headers=b_agent)
    assert r.status_code == 422 and r.json()["code"] == "unknown_repository"
    assert await count(runtime, Task) == tasks_before

    # Without auto-registration an unregistered name is refused the same way.
    monkeypatch.setattr(runtime.settings.repos, "repositories_auto_register", False)
    r = await client.post("/api/v1/tasks", json={"title": "new", "repo": "beta-app"}, headers=b_agent)
    assert r.status_code == 422 and r.json()["code"] == "unknown_repository"
    assert await count(runtime, Repository, Repository.name == "beta-app") == 0
    # With it (the default), the first task naming it registers it to its organization.
    monkeypatch.setattr(runtime.settings.repos, "repositories_auto_register", True)
    r = await client.post("/api/v1/tasks", json={"title": "new", "repo": "beta-app"}, headers=b_agent)
    assert r.status_code == 201 and r.json()["repo"] == "beta-app"
    async with runtime.sessions() as session:
        owner = await session.scalar(select(Repository.org_id).where(Repository.name == "beta-app"))
    assert owner == beta.id
    r = await client.post("/api/v1/tasks", json={"title": "mine?", "repo": "beta-app"}, headers=a_agent)
    assert r.status_code == 422 and r.json()["code"] == "unknown_repository"
    # Now Beta's tasks without a repository go to its first registered one.
    r = await client.post("/api/v1/tasks", json={"title": "default for beta"}, headers=b_agent)
    assert r.status_code == 201 and r.json()["repo"] == "beta-app"
    # The default organization keeps the configured default repository.
    r = await client.post("/api/v1/tasks", json={"title": "default for alpha"}, headers=a_agent)
    assert r.status_code == 201 and r.json()["repo"] == runtime.settings.repos.default_repo

    # Unregistering is for the owner's admins.
    assert (await client.delete(f"/api/v1/repositories/{alpha_id}", headers=b_admin)).status_code == 404
    assert (await client.delete(f"/api/v1/repositories/{alpha_id}", headers=a_agent)).status_code == 403
    r = await client.delete(f"/api/v1/repositories/{alpha_id}", headers=a_admin)
    assert r.status_code == 200 and r.json()["name"] == "alpha-app"
    names = [r["name"] for r in (await client.get("/api/v1/repositories", headers=a_admin)).json()]
    assert names == [runtime.settings.repos.default_repo]


async def test_a_github_repository_maps_to_one_organization(client, factory):
    beta = await factory.org("beta")
    _, a_admin = await factory.member("admin")
    _, b_admin = await factory.member("admin", org=beta)
    r = await client.post(
        "/api/v1/repositories", json={"name": "widgets", "github_repo": "acme/widgets"}, headers=a_admin
    )
    assert r.status_code == 201 and r.json()["github_repo"] == "acme/widgets"
    r = await client.post(
        "/api/v1/repositories", json={"name": "widgets-b", "github_repo": "ACME/widgets"}, headers=b_admin
    )
    assert r.status_code == 409
    r = await client.post(
        "/api/v1/repositories", json={"name": "w", "github_repo": "not a repo"}, headers=b_admin
    )
    assert r.status_code == 422


async def test_configured_repositories_are_registered_at_start_up(runtime, factory):
    beta = await factory.org("beta")
    default = await factory.org()
    async with db.transaction(runtime.sessions) as session:
        # an older deployment's task, in Beta, naming a repository nobody registered yet
        session.add(Task(org_id=beta.id, title="old", repo="legacy", base_branch="main"))
        await session.flush()
    for _ in range(2):  # idempotent: every start runs it
        async with db.transaction(runtime.sessions) as session:
            await repositories.register_configured(
                session, names=["default", "tools", "default"], github={"web": "acme/web", "*": "acme/any"}
            )
    async with runtime.sessions() as session:
        rows = (await session.execute(select(Repository).order_by(Repository.name))).scalars().all()
    assert [(r.name, r.org_id, r.github_repo) for r in rows] == [
        ("default", default.id, None),
        ("legacy", beta.id, None),
        ("tools", default.id, None),
        ("web", default.id, "acme/web"),
    ]


async def test_cli_creates_an_organization_and_its_admin(database_url, runtime, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OSIRIS_SECRET_KEY", "cli-test-secret")
    monkeypatch.setenv("OSIRIS_DATA_DIR", str(tmp_path / "cli-data"))
    assert await asyncio.to_thread(cli.main, ["org", "create", "gamma", "--name", "Gamma"]) == 0
    assert await asyncio.to_thread(cli.main, ["org", "create", "gamma"]) == 1  # exists
    argv = ["user", "create", "gamma-admin", "--role", "admin", "--org", "gamma"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    argv = ["user", "create", "root2", "--role", "admin", "--superuser"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    argv = ["user", "create", "bot2", "--role", "agent", "--superuser"]
    assert await asyncio.to_thread(cli.main, argv) == 1
    async with runtime.sessions() as session:
        gamma = await session.scalar(select(Organization).where(Organization.slug == "gamma"))
        admin = await accounts.find_user(session, "gamma-admin")
        root = await accounts.find_user(session, "root2")
    assert gamma is not None and gamma.name == "Gamma"
    assert admin.org_id == gamma.id and not admin.is_superuser
    assert root.is_superuser and root.org_id != gamma.id


async def test_repository_names_that_differ_only_in_case_are_one_repository(client, factory, runtime):
    """`App` and `app` are one directory on a case-insensitive file system: one name, one owner."""
    beta = await factory.org("beta-case")
    _, a_admin = await factory.member("admin")
    _, a_agent = await factory.member("agent")
    _, b_admin = await factory.member("admin", org=beta)
    _, b_agent = await factory.member("agent", org=beta)
    r = await client.post("/api/v1/repositories", json={"name": "app"}, headers=a_admin)
    assert r.status_code == 201, r.text

    # Another organization registering it in another case: 409, saying which name holds it.
    for name in ("App", "APP", "aPp"):
        r = await client.post("/api/v1/repositories", json={"name": name}, headers=b_admin)
        assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
        assert "'app' exists" in r.json()["detail"] and "case" in r.json()["detail"]
    # Nor by filing a task that names it (auto-registration): refused like a missing one, nothing written.
    before = await count(runtime, Task), await count(runtime, Repository)
    r = await client.post("/api/v1/tasks", json={"title": "steal", "repo": "APP"}, headers=b_agent)
    assert r.status_code == 422 and r.json()["code"] == "unknown_repository", r.text
    assert (await count(runtime, Task), await count(runtime, Repository)) == before
    # The owner may name it in any case; the task gets the name as registered (one directory).
    r = await client.post("/api/v1/tasks", json={"title": "mine", "repo": "App"}, headers=a_agent)
    assert r.status_code == 201 and r.json()["repo"] == "app", r.text
    async with runtime.sessions() as session:
        assert await repositories.owner_of(session, "APP") == (await factory.org()).id
    # The same name again in the owner's organization is a conflict too.
    r = await client.post("/api/v1/repositories", json={"name": "APP"}, headers=a_admin)
    assert r.status_code == 409


async def test_two_organizations_registering_one_name_in_two_cases_at_once_get_one(factory):
    """The unique index on lower(name) decides a race; the loser is told it is taken."""
    orgs = [await factory.org(f"race-{i}") for i in range(2)]

    async def register(org, name):
        try:
            async with db.transaction(factory.runtime.sessions) as session:
                await repositories.create_repository(session, org_id=org.id, name=name)
            return "created"
        except Exception as exc:
            return type(exc).__name__

    results = await asyncio.gather(register(orgs[0], "Racer"), register(orgs[1], "racer"))
    assert sorted(results) == ["Conflict", "created"]
    assert await count(factory.runtime, Repository, func.lower(Repository.name) == "racer") == 1
