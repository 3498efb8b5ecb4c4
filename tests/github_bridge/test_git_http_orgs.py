"""The smart-HTTP git server serves a repository only to tokens of the organization it is registered
to: real `git` against a real server, as in test_local_git_http."""

from __future__ import annotations

import httpx
from sqlalchemy import delete

from osiris.app import db
from osiris.app.models import Repository

from .git_http_helpers import git, published_repo


async def test_another_organizations_token_cannot_clone(git_server, client, factory, runtime, tmp_path):
    name, _, token = await published_repo(client, factory, runtime)  # registered to the default org
    _, outsider = await factory.member("agent", org=await factory.org("beta"))
    their_token = outsider["Authorization"].removeprefix("Bearer ")

    ours = git_server.replace("http://", f"http://agent:{token}@") + f"/git/{name}.git"
    status, out = await git("clone", "-q", ours, str(tmp_path / "ours"))
    assert status == 0, out

    theirs = git_server.replace("http://", f"http://agent:{their_token}@") + f"/git/{name}.git"
    status, out = await git("clone", "-q", theirs, str(tmp_path / "theirs"))
    assert status != 0 and not (tmp_path / "theirs" / "README.md").exists(), out
    assert "404" in out or "not found" in out.lower(), out
    async with httpx.AsyncClient(base_url=git_server, headers=outsider) as http:
        for args in (
            ("GET", f"/git/{name}.git/info/refs", {"service": "git-upload-pack"}),
            ("GET", "/git/no-such-repo.git/info/refs", {"service": "git-upload-pack"}),
        ):
            r = await http.request(args[0], args[1], params=args[2])
            # exactly what a missing repository answers: nothing tells them it exists
            assert (r.status_code, r.text) == (404, "no such repository\n"), args
        r = await http.post(
            f"/git/{name}.git/git-upload-pack",
            content=b"0000",
            headers={"Content-Type": "application/x-git-upload-pack-request"},
        )
        assert r.status_code == 404

    # A repository on disk that no organization has registered is served to nobody.
    async with db.transaction(runtime.sessions) as session:
        await session.execute(delete(Repository).where(Repository.name == name))
    status, out = await git("ls-remote", ours)
    assert status != 0, out
