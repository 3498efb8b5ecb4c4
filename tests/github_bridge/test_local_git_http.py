"""Fetching the local repositories over smart HTTP with a real git client and a real server."""

from __future__ import annotations

import base64

import httpx

from .git_http_helpers import git, published_repo


async def test_clone_and_fetch_with_a_token(git_server, client, factory, runtime, tmp_path):
    name, task_id, token = await published_repo(client, factory, runtime)
    url = git_server.replace("http://", f"http://agent:{token}@") + f"/git/{name}.git"
    status, out = await git("clone", "-q", url, str(tmp_path / "clone"))
    assert status == 0, out
    clone = tmp_path / "clone"
    assert (clone / "README.md").read_text().startswith(f"# {name}")
    status, out = await git("fetch", "-q", "origin", f"osiris/task-{task_id}", cwd=clone)
    assert status == 0, out
    status, out = await git("show", "FETCH_HEAD:src/hello.txt", cwd=clone)
    assert (status, out) == (0, "hello\n")

    # OSIRIS's bookkeeping refs are not advertised; the task branch is.
    status, out = await git("ls-remote", url)
    assert status == 0 and f"refs/heads/osiris/task-{task_id}" in out and "refs/osiris/" not in out

    # The bearer header works as well as Basic.
    plain = f"{git_server}/git/{name}.git"
    status, out = await git("-c", f"http.extraHeader=Authorization: Bearer {token}", "ls-remote", plain)
    assert status == 0 and "refs/heads/main" in out


async def test_without_a_token_or_with_a_bad_one_401(git_server, client, factory, runtime):
    name, _, _ = await published_repo(client, factory, runtime)
    async with httpx.AsyncClient(base_url=git_server) as http:
        r = await http.get(f"/git/{name}.git/info/refs", params={"service": "git-upload-pack"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        bad = base64.b64encode(b"agent:osr_not_a_real_token").decode()
        r = await http.get(
            f"/git/{name}.git/info/refs",
            params={"service": "git-upload-pack"},
            headers={"Authorization": f"Basic {bad}"},
        )
        assert r.status_code == 401
    status, out = await git("ls-remote", f"{git_server}/git/{name}.git")
    assert status != 0 and ("401" in out or "Authentication failed" in out or "could not read" in out), out


async def test_push_is_refused(git_server, client, factory, runtime, tmp_path):
    name, _, token = await published_repo(client, factory, runtime)
    url = git_server.replace("http://", f"http://agent:{token}@") + f"/git/{name}.git"
    clone = tmp_path / "clone"
    assert (await git("clone", "-q", url, str(clone)))[0] == 0
    (clone / "evil.txt").write_text("x\n")
    await git("add", "evil.txt", cwd=clone)
    await git("-c", "user.name=e", "-c", "user.email=e@x", "commit", "-qm", "evil", cwd=clone)
    status, out = await git("push", "origin", "HEAD:main", cwd=clone)
    assert status != 0, out
    repo = runtime.services.code_host.repo_path(name)
    status, listed = await git("--git-dir", str(repo), "log", "--format=%s", "main")
    assert "evil" not in listed

    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=git_server, headers=auth) as http:
        r = await http.get(f"/git/{name}.git/info/refs", params={"service": "git-receive-pack"})
        assert r.status_code == 403
        r = await http.post(f"/git/{name}.git/git-receive-pack", content=b"0000")
        assert r.status_code == 403
        # Dumb HTTP and anything else under the repository is not served either.
        assert (await http.get(f"/git/{name}.git/HEAD")).status_code == 404
        assert (await http.get(f"/git/{name}.git/config")).status_code == 404


async def test_paths_cannot_escape_the_repositories(git_server, client, factory, runtime):
    _, _, token = await published_repo(client, factory, runtime)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=git_server, headers=auth) as http:
        for raw in (
            "/git/..%2F..%2Fsecret.git/info/refs?service=git-upload-pack",
            "/git/%2E%2E/data.git/info/refs?service=git-upload-pack",
            "/git/repos/..%2Fdefault.git/info/refs?service=git-upload-pack",
            "/git/missing.git/info/refs?service=git-upload-pack",
        ):
            r = await http.get(raw)
            assert r.status_code == 404, (raw, r.status_code)
