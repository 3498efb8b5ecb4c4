"""A GitHub fake at the HTTP boundary, backed by real bare git repositories.

Only the endpoints OSIRIS uses (and those a test needs to act as a human reviewer) exist. Every request
and every response is checked against GitHub's REST OpenAPI description (`openapi_check.Spec`);
problems are collected in `FakeGitHub.violations`, which each test asserts empty. Webhooks are built
from GitHub's own example payloads (`webhook-examples.json`), patched with this fake's state, and
signed with HMAC-SHA256 exactly like GitHub; they queue in `outbox` until a test delivers them.

Faults (`FakeGitHub.fail`) make the next matching requests answer 500, 429 + Retry-After, a secondary
rate limit (403 + retry-after), a primary one (403 + x-ratelimit-remaining: 0), or time out — either
before the request reaches the fake or after it took effect (the answer is lost), the nasty case.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import os
import re
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import jwt

from tests.support.openapi_check import SHARED, Spec

EXAMPLES = json.loads((SHARED / "webhook-examples.json").read_text())
BOT = "osiris-bot"  # the account OSIRIS's token belongs to
API_VERSION_HEADER = {"x-github-media-type": "github.v3; format=json"}


def example(name: str, action: str | None = None) -> dict[str, Any]:
    for group in EXAMPLES:
        if group["name"] == name:
            for ex in group["examples"]:
                if action is None or ex.get("action") == action:
                    return copy.deepcopy(ex)
    raise KeyError(f"no example for {name}/{action}")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hook_headers(secret: str, event: str, body: bytes, delivery: str | None = None) -> dict[str, str]:
    """The headers GitHub sends with a webhook: the event, the delivery id (a new one unless given) and
    the body's HMAC-SHA256 under the hook's secret."""
    return {
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/fake",
        "x-github-event": event,
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-github-hook-id": "1",
        "x-hub-signature-256": sign(secret, body),
    }


class Git:
    """A bare repository driven through the git CLI."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(
        self,
        *args: str,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        ok: tuple[int, ...] = (0,),
    ) -> str:
        proc = subprocess.run(
            ["git", "--git-dir", str(self.path), *args],
            input=stdin,
            capture_output=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
        if proc.returncode not in ok:
            raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.decode()}")
        return proc.stdout.decode()

    def code(self, *args: str) -> int:
        return subprocess.run(
            ["git", "--git-dir", str(self.path), *args], capture_output=True, check=False
        ).returncode

    def rev(self, ref: str) -> str | None:
        out = subprocess.run(
            ["git", "--git-dir", str(self.path), "rev-parse", "--verify", "--quiet", ref],
            capture_output=True,
            check=False,
        )
        return out.stdout.decode().strip() or None

    def commit_info(self, sha: str) -> dict[str, Any] | None:
        if self.code("cat-file", "-e", f"{sha}^{{commit}}") != 0:
            return None
        raw = self.run("cat-file", "commit", sha)
        head, _, message = raw.partition("\n\n")
        info: dict[str, Any] = {"sha": sha, "message": message, "parents": []}
        for line in head.splitlines():
            key, _, rest = line.partition(" ")
            if key == "tree":
                info["tree"] = rest
            elif key == "parent":
                info["parents"].append(rest)
            elif key in ("author", "committer"):
                m = re.match(r"(.*) <(.*)> (\d+) ([+-]\d{4})", rest)
                assert m
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(m.group(3))))
                info[key] = {"name": m.group(1), "email": m.group(2), "date": when}
        return info

    def ls_tree(self, tree: str) -> dict[str, tuple[str, str, str]]:
        out: dict[str, tuple[str, str, str]] = {}
        for line in self.run("ls-tree", "-z", tree).split("\0"):
            if line:
                meta, name = line.split("\t", 1)
                mode, kind, sha = meta.split()
                out[name] = (mode, kind, sha)
        return out

    def mktree(self, entries: dict[str, tuple[str, str, str]]) -> str:
        lines = "".join(f"{m} {k} {s}\t{n}\0" for n, (m, k, s) in sorted(entries.items()))
        return self.run("mktree", "-z", stdin=lines.encode()).strip()

    def blob(self, content: bytes) -> str:
        return self.run("hash-object", "-w", "--stdin", stdin=content).strip()


@dataclass
class Fault:
    pattern: str  # regex over "METHOD /path"
    kind: str  # 500 | 429 | secondary | primary | timeout-before | timeout-after
    times: int = 1


@dataclass
class PullRequest:
    repo: str
    number: int
    title: str
    body: str
    head: str
    base: str
    draft: bool
    user: str
    id: int
    state: str = "open"
    merged: bool = False
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    labels: list[str] = field(default_factory=list)
    requested_reviewers: list[str] = field(default_factory=list)  # logins, in the order asked

    @property
    def node_id(self) -> str:
        return f"PR_fake{self.id}"


@dataclass
class Issue:
    """A plain issue (not a PR); it shares its repository's numbers with pull requests, as on GitHub."""

    repo: str
    number: int
    title: str
    body: str
    user: str
    id: int
    state: str = "open"
    labels: list[str] = field(default_factory=list)


_CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)\b", re.IGNORECASE)


class FakeGitHub:
    def __init__(self, root: Path, *, secret: str, owner: str = "acme", name: str = "widgets") -> None:
        self.root = root
        self.secret = secret
        self.spec = Spec()
        self.repos: dict[str, Git] = {}
        self.pulls: dict[tuple[str, int], PullRequest] = {}
        self.issues: dict[tuple[str, int], Issue] = {}
        self.comments: list[dict[str, Any]] = []  # issue comments
        self.review_comments: list[dict[str, Any]] = []
        self.reviews: list[dict[str, Any]] = []
        self.tokens: dict[str, str] = {"osiris-token": BOT}
        self.permissions: dict[str, str] = {}
        self.installations: dict[str, str] = {}  # installation id -> app public key (PEM)
        self.faults: list[Fault] = []
        self.violations: list[str] = []
        self.calls: Counter[str] = Counter()  # "METHOD template" -> n
        self.calls_by: dict[str, Counter[str]] = {}  # login -> its calls, e.g. calls_by[BOT]
        self.log: list[tuple[str, str, int]] = []
        self.outbox: list[tuple[dict[str, str], bytes]] = []
        self.app_tokens: dict[str, int] = {}  # installation token -> the App it was issued to
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []  # commit statuses, oldest first
        self.merges: list[tuple[str, str | None]] = []  # (login, why refused or None), REST or GraphQL
        self.git_requests: list[tuple[str, str, str | None]] = []  # smart HTTP: (method, path, login)
        self._git_server: _GitHTTPServer | None = None
        self._ids = itertools.count(1000)
        self._numbers: dict[str, itertools.count[int]] = {}
        self.full_name = f"{owner}/{name}"

    # --- setup ------------------------------------------------------------------------------------

    def create_repo(self, full_name: str, files: dict[str, str], *, branch: str = "main") -> Git:
        path = self.root / f"{full_name.replace('/', '__')}.git"
        subprocess.run(["git", "init", "--bare", "-q", "-b", branch, str(path)], check=True)
        git = Git(path)
        self.repos[full_name] = git
        self._numbers[full_name] = itertools.count(1)
        self.commit_files(full_name, branch, files, "initial commit")
        return git

    def create_big_repo(self, full_name: str, n_files: int, *, branch: str = "main") -> Git:
        """A repository of n_files small files in directories of 100, written with fast-import."""
        path = self.root / f"{full_name.replace('/', '__')}.git"
        subprocess.run(["git", "init", "--bare", "-q", "-b", branch, str(path)], check=True)
        git = Git(path)
        self.repos[full_name] = git
        self._numbers[full_name] = itertools.count(1)
        chunks = [
            f"commit refs/heads/{branch}\ncommitter Fake <fake@example.com> 1700000000 +0000\ndata 7\ninitial\n"
        ]
        for i in range(n_files):
            data = f"file {i}\n".encode()
            chunks.append(
                f"M 100644 inline src/d{i // 100:04d}/f{i:05d}.txt\ndata {len(data)}\n{data.decode()}"
            )
        chunks.append("M 100644 inline README.md\ndata 7\nhello!\n")
        subprocess.run(
            ["git", "--git-dir", str(path), "fast-import", "--quiet"],
            input="".join(chunks).encode(),
            check=True,
        )
        return git

    def commit_files(self, full_name: str, branch: str, files: dict[str, str], message: str) -> str:
        """A commit made by a person (not through the API): moves `branch`."""
        git = self.repos[full_name]
        parent = git.rev(f"refs/heads/{branch}")
        base_tree = git.commit_info(parent)["tree"] if parent else None
        tree = self._build_tree(
            git,
            base_tree,
            [{"path": p, "mode": "100644", "type": "blob", "content": c} for p, c in files.items()],
        )
        env = _who_env({"name": "Someone", "email": "someone@example.com", "date": "2024-01-01T00:00:00Z"})
        args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
        sha = git.run(*args, env=env).strip()
        git.run("update-ref", f"refs/heads/{branch}", sha)
        return sha

    def read_file(self, full_name: str, ref: str, path: str) -> str | None:
        git = self.repos[full_name]
        if git.code("cat-file", "-e", f"{ref}:{path}") != 0:
            return None
        return git.run("cat-file", "-p", f"{ref}:{path}")

    def fail(self, pattern: str, kind: str, times: int = 1) -> None:
        self.faults.append(Fault(pattern, kind, times))

    def transport(self) -> httpx.AsyncBaseTransport:
        return _Transport(self)

    def client(self, token: str = "osiris-token") -> httpx.AsyncClient:
        """A client that acts as whoever owns `token` (tests use it to play the human reviewer)."""
        return httpx.AsyncClient(
            transport=self.transport(),
            base_url="https://api.github.test",
            headers={"Authorization": f"token {token}", "Accept": "application/vnd.github+json"},
        )

    async def deliver(self, osiris: httpx.AsyncClient) -> list[httpx.Response]:
        """POST every queued webhook to OSIRIS, in order."""
        sent, self.outbox = self.outbox, []
        return [
            await osiris.post("/api/v1/webhooks/github", content=body, headers=headers)
            for headers, body in sent
        ]

    # --- webhooks ---------------------------------------------------------------------------------

    def _repository(self, full_name: str, payload: dict[str, Any]) -> None:
        owner, name = full_name.split("/")
        repo = payload.setdefault("repository", {})
        repo.update({"full_name": full_name, "name": name})
        repo.setdefault("owner", {})["login"] = owner

    def _pr_payload(self, pr: PullRequest, into: dict[str, Any]) -> dict[str, Any]:
        git = self.repos[pr.repo]
        into.update(
            {
                "number": pr.number,
                "id": pr.id,
                "node_id": pr.node_id,
                "title": pr.title,
                "body": pr.body,
                "state": pr.state,
                "draft": pr.draft,
                "merged": pr.merged,
                "merge_commit_sha": pr.merge_commit_sha,
                "html_url": f"https://github.test/{pr.repo}/pull/{pr.number}",
            }
        )
        into["merged_by"] = (
            {**(into.get("merged_by") or into["user"]), "login": pr.merged_by} if pr.merged_by else None
        )
        into["user"] = {**into["user"], "login": pr.user, "type": "Bot"}
        into["head"] = {
            **into["head"],
            "ref": pr.head,
            "sha": git.rev(f"refs/heads/{pr.head}") or into["head"]["sha"],
        }
        into["base"] = {**into["base"], "ref": pr.base, "sha": git.rev(f"refs/heads/{pr.base}")}
        return into

    def emit(
        self, name: str, payload: dict[str, Any], *, secret: str | None = None, delivery: str | None = None
    ) -> str:
        body = json.dumps(payload).encode()
        headers = hook_headers(secret or self.secret, name, body, delivery)
        self.outbox.append((headers, body))
        return headers["x-github-delivery"]

    def emit_pr(self, action: str, pr: PullRequest, sender: str) -> None:
        payload = example("pull_request", action)
        self._repository(pr.repo, payload)
        self._pr_payload(pr, payload["pull_request"])
        payload["sender"]["login"] = sender
        self.emit("pull_request", payload)

    def _emit_review(self, pr: PullRequest, review: dict[str, Any]) -> None:
        payload = example("pull_request_review", "submitted")
        self._repository(pr.repo, payload)
        self._pr_payload(pr, payload["pull_request"])
        payload["review"].update(
            {k: review[k] for k in ("id", "body", "commit_id", "html_url")}
            | {
                "state": review["state"].lower(),
                "user": {**payload["review"]["user"], "login": review["user"]["login"]},
            }
        )
        payload["sender"]["login"] = review["user"]["login"]
        self.emit("pull_request_review", payload)

    def _emit_review_comment(self, pr: PullRequest, comment: dict[str, Any]) -> None:
        payload = example("pull_request_review_comment", "created")
        self._repository(pr.repo, payload)
        self._pr_payload(pr, payload["pull_request"])
        keys = ("id", "body", "path", "line", "diff_hunk", "pull_request_review_id", "commit_id", "html_url")
        payload["comment"].update({k: comment[k] for k in keys})
        payload["comment"]["user"] = {**payload["comment"]["user"], "login": comment["user"]["login"]}
        payload["sender"]["login"] = comment["user"]["login"]
        self.emit("pull_request_review_comment", payload)

    def _emit_issue_comment(self, pr: PullRequest, comment: dict[str, Any]) -> None:
        payload = example("issue_comment", "created")
        self._repository(pr.repo, payload)
        issue = payload["issue"]
        issue.update({"number": pr.number, "title": pr.title, "state": pr.state})
        issue["user"] = {**issue["user"], "login": pr.user}
        issue["pull_request"] = {
            "url": f"https://api.github.test/repos/{pr.repo}/pulls/{pr.number}",
            "html_url": f"https://github.test/{pr.repo}/pull/{pr.number}",
            "diff_url": f"https://github.test/{pr.repo}/pull/{pr.number}.diff",
            "patch_url": f"https://github.test/{pr.repo}/pull/{pr.number}.patch",
        }
        payload["comment"].update(
            {k: comment[k] for k in ("id", "body", "html_url", "created_at", "updated_at")}
        )
        payload["comment"]["user"] = {**payload["comment"]["user"], "login": comment["user"]["login"]}
        payload["sender"]["login"] = comment["user"]["login"]
        self.emit("issue_comment", payload)

    # --- the HTTP side ----------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        method = request.method
        if path == "/graphql":  # a fault or a log line can name what the document does
            path = f"{path} {graphql_operation(request.content)}"
        key = f"{method} {path}"
        fault = self._fault(key)
        if fault in ("timeout-before",):
            raise httpx.ConnectTimeout("fake: timed out", request=request)
        if fault in ("500", "429", "secondary", "primary"):
            self.log.append((method, path, 0))
            return _fault_response(fault)
        response = self._dispatch(request, method, path)
        self.log.append((method, path, response.status_code))
        if fault == "timeout-after":  # it happened, but the answer never arrives
            raise httpx.ReadTimeout("fake: read timed out", request=request)
        return response

    async def answer(self, request: httpx.Request) -> httpx.Response:
        """`handle`, with a path GitHub does not know answered as GitHub answers it (404)."""
        try:
            return await self.handle(request)
        except _NotFound:
            return _json(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})

    def _fault(self, key: str) -> str | None:
        for fault in self.faults:
            if fault.times > 0 and re.search(fault.pattern, key):
                fault.times -= 1
                return fault.kind
        return None

    def _dispatch(self, request: httpx.Request, method: str, path: str) -> httpx.Response:
        raw = request.content
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return _json(400, {"message": "Problems parsing JSON"})
        login = self._login(request)
        if path.startswith("/graphql") and method == "POST":  # counted by what it does
            self.calls[f"POST {path}"] += 1
            self.calls_by.setdefault(login or "", Counter())[f"POST {path}"] += 1
            return self._graphql(body or {}, login)
        found = self.spec.find(method, path)
        if found is None:
            self.violations.append(f"{method} {path}: not in GitHub's REST description")
            return _json(404, {"message": "Not Found"})
        op, params = found
        query = dict(
            parse_qsl(
                request.url.query.decode() if isinstance(request.url.query, bytes) else request.url.query
            )
        )
        self.calls[op.key] += 1
        self.calls_by.setdefault(login or "", Counter())[op.key] += 1
        self.violations += self.spec.check_request(op, query, body)
        if login is None and not op.template.startswith("/app/"):
            return _json(401, {"message": "Bad credentials"})
        handler = getattr(
            self, "op_" + re.sub(r"\W+", "_", f"{method} {op.template}").strip("_").lower(), None
        )
        if handler is None:
            self.violations.append(f"{op.key}: the fake does not implement it")
            return _json(404, {"message": "Not Found"})
        status, answer = handler(params, query, body or {}, login, request)
        if answer is not None:
            answer = self.spec.complete(op, status, answer)
        problems = self.spec.check_response(op, status, answer)
        self.violations += [f"response: {p}" for p in problems]
        response = _json(status, answer)
        link = self.__dict__.pop("_link", None)  # a paginated list's next page
        if link:
            response.headers["Link"] = link
        return response

    def _login(self, request: httpx.Request) -> str | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() in ("token", "bearer") and token in self.tokens:
            return self.tokens[token]
        return None

    # --- repositories and git data ---------------------------------------------------------------

    def _git(self, params: dict[str, str]) -> tuple[str, Git]:
        full = f"{params['owner']}/{params['repo']}"
        if full not in self.repos:
            raise _NotFound
        return full, self.repos[full]

    def op_get_repos_owner_repo_branches_branch(self, p, q, b, login, r):
        full, git = self._git(p)
        sha = git.rev(f"refs/heads/{p['branch']}")
        if sha is None:
            return 404, {"message": "Branch not found", "documentation_url": "https://docs.github.com/rest"}
        info = git.commit_info(sha)
        commit = {
            "sha": sha,
            "node_id": f"C_{sha[:12]}",
            "url": f"https://api.github.test/repos/{full}/commits/{sha}",
            "commit": {
                "message": info["message"],
                "tree": {"sha": info["tree"], "url": "https://api.github.test/tree"},
                "author": info["author"],
                "committer": info["committer"],
            },
            "parents": [{"sha": s, "url": "https://api.github.test/c"} for s in info["parents"]],
        }
        return 200, {"name": p["branch"], "commit": commit, "protected": False}

    def op_get_repos_owner_repo_contents_path(self, p, q, b, login, r):
        full, git = self._git(p)
        ref = q.get("ref", "HEAD")
        spec = f"{ref}:{p['path']}"
        if git.code("cat-file", "-e", spec) != 0:
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        sha = git.rev(spec)
        if git.run("cat-file", "-t", sha).strip() != "blob":
            return 200, []
        data = subprocess.run(
            ["git", "--git-dir", str(git.path), "cat-file", "blob", sha], capture_output=True, check=True
        ).stdout
        return 200, {
            "type": "file",
            "encoding": "base64",
            "size": len(data),
            "name": p["path"].rsplit("/", 1)[-1],
            "path": p["path"],
            "content": base64.encodebytes(data).decode(),
            "sha": sha,
        }

    def op_get_repos_owner_repo_git_ref_ref(self, p, q, b, login, r):
        full, git = self._git(p)
        sha = git.rev(f"refs/{p['ref']}")
        if sha is None:
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        return 200, _ref(full, f"refs/{p['ref']}", sha)

    def op_post_repos_owner_repo_git_refs(self, p, q, b, login, r):
        full, git = self._git(p)
        ref, sha = b["ref"], b["sha"]
        if git.commit_info(sha) is None:
            return 422, {
                "message": "Object does not exist",
                "documentation_url": "https://docs.github.com/rest",
            }
        if git.rev(ref) is not None:
            return 422, {
                "message": "Reference already exists",
                "documentation_url": "https://docs.github.com/rest",
            }
        git.run("update-ref", ref, sha, "0" * 40)
        return 201, _ref(full, ref, sha)

    def op_patch_repos_owner_repo_git_refs_ref(self, p, q, b, login, r):
        full, git = self._git(p)
        ref = f"refs/{p['ref']}"
        old = git.rev(ref)
        if old is None:
            return 422, {
                "message": "Reference does not exist",
                "documentation_url": "https://docs.github.com/rest",
            }
        new = b["sha"]
        if git.commit_info(new) is None:
            return 422, {
                "message": "Object does not exist",
                "documentation_url": "https://docs.github.com/rest",
            }
        if not b.get("force") and old != new and git.code("merge-base", "--is-ancestor", old, new) != 0:
            return 422, {
                "message": "Update is not a fast forward",
                "documentation_url": "https://docs.github.com/rest",
            }
        git.run("update-ref", ref, new, old)
        return 200, _ref(full, ref, new)

    def op_delete_repos_owner_repo_git_refs_ref(self, p, q, b, login, r):
        full, git = self._git(p)
        ref = f"refs/{p['ref']}"
        if git.rev(ref) is None:
            return 422, None  # GitHub's description documents this 422 without a body
        git.run("update-ref", "-d", ref)
        return 204, None

    def op_post_repos_owner_repo_git_trees(self, p, q, b, login, r):
        full, git = self._git(p)
        try:
            sha = self._build_tree(git, b.get("base_tree"), b["tree"])
        except KeyError as exc:
            return 422, {
                "message": f"tree.path {exc} does not exist",
                "documentation_url": "https://docs.github.com/rest",
            }
        entries = [{"path": n, "mode": m, "type": k, "sha": s} for n, (m, k, s) in git.ls_tree(sha).items()]
        return 201, {
            "sha": sha,
            "url": f"https://api.github.test/repos/{full}/git/trees/{sha}",
            "tree": entries,
            "truncated": False,
        }

    def _build_tree(self, git: Git, base: str | None, entries: list[dict[str, Any]]) -> str:
        """Rewrite only the directories on the touched paths (what GitHub's base_tree does)."""
        current = git.ls_tree(base) if base else {}
        nested: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            head, _, rest = e["path"].partition("/")
            if rest:
                nested.setdefault(head, []).append({**e, "path": rest})
            elif "content" in e:
                current[head] = (e["mode"], "blob", git.blob(e["content"].encode()))
            elif e.get("sha") is None:
                current.pop(head, None)
            else:
                current[head] = (e["mode"], e["type"], e["sha"])
        for name, sub in nested.items():
            existing = current.get(name)
            tree = self._build_tree(git, existing[2] if existing and existing[1] == "tree" else None, sub)
            if git.ls_tree(tree):
                current[name] = ("040000", "tree", tree)
            else:
                current.pop(name, None)
        return git.mktree(current)

    def op_post_repos_owner_repo_git_commits(self, p, q, b, login, r):
        full, git = self._git(p)
        args = ["commit-tree", b["tree"]]
        for parent in b.get("parents", []):
            args += ["-p", parent]
        env: dict[str, str] = {}
        for role, prefix in (("author", "GIT_AUTHOR"), ("committer", "GIT_COMMITTER")):
            who = (
                b.get(role)
                or b.get("author")
                or {"name": login, "email": f"{login}@users.noreply.github.test"}
            )
            env |= {f"{prefix}_NAME": who["name"], f"{prefix}_EMAIL": who["email"]}
            if who.get("date"):
                env[f"{prefix}_DATE"] = who["date"]
        sha = git.run(*args, "-F", "-", stdin=b["message"].encode(), env=env).strip()
        return 201, _commit(full, git.commit_info(sha))

    def op_get_repos_owner_repo_git_commits_commit_sha(self, p, q, b, login, r):
        full, git = self._git(p)
        info = git.commit_info(p["commit_sha"])
        if info is None:
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        return 200, _commit(full, info)

    def op_get_repos_owner_repo_compare_basehead(self, p, q, b, login, r):
        full, git = self._git(p)
        base, _, head = p["basehead"].partition("...")
        bs, hs = (
            git.rev(f"refs/heads/{base}") or git.rev(base),
            git.rev(f"refs/heads/{head}") or git.rev(head),
        )
        if not bs or not hs:
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        mb = git.run("merge-base", bs, hs).strip()
        files = []
        for line in git.run("diff", "--name-status", mb, hs).splitlines():
            status, _, name = line.partition("\t")
            files.append(
                {
                    "sha": hs,
                    "filename": name,
                    "status": {"A": "added", "D": "removed"}.get(status[0], "modified"),
                    "additions": 0,
                    "deletions": 0,
                    "changes": 0,
                    "blob_url": "https://github.test/b",
                    "raw_url": "https://github.test/r",
                    "contents_url": "https://api.github.test/c",
                }
            )
        return 200, {
            "status": "diverged",
            "merge_base_commit": _rest_commit(full, git.commit_info(mb)),
            "base_commit": _rest_commit(full, git.commit_info(bs)),
            "commits": [],
            "files": files,
        }

    def _diff_entries(self, full: str, git: Git, base: str, head: str) -> list[dict[str, Any]]:
        """Diff Entries of base...head as GitHub lists them: one per file, with its `patch` from the
        first @@ (left out for a binary file), `previous_filename` for a rename."""
        mb = git.run("merge-base", base, head).strip()
        numstat = git.run("diff", "-z", "--numstat", "-M", mb, head).split("\0")
        rows: list[tuple[str, str, str, str | None]] = []
        i = 0
        while i < len(numstat) and numstat[i]:
            added, deleted, name = numstat[i].split("\t", 2)
            if name:
                rows.append((added, deleted, name, None))
                i += 1
            else:
                rows.append((added, deleted, numstat[i + 2], numstat[i + 1]))
                i += 3
        statuses = git.run("diff", "-z", "--name-status", "-M", mb, head).split("\0")
        letters = [t[0] for t in statuses if t and t[0] in "ACDMRT" and (len(t) == 1 or t[1:].isdigit())]
        sections = re.split(r"(?m)^diff --git ", git.run("diff", "-M", "--no-color", mb, head))[1:]
        entries = []
        for n, (added, deleted, name, old) in enumerate(rows):
            binary = added == "-"
            body = sections[n] if n < len(sections) else ""
            at = body.find("\n@@")
            entry = {
                "sha": head,
                "filename": name,
                "status": {"A": "added", "D": "removed", "R": "renamed", "C": "copied"}.get(
                    letters[n], "modified"
                ),
                "additions": 0 if binary else int(added),
                "deletions": 0 if binary else int(deleted),
                "changes": 0 if binary else int(added) + int(deleted),
                "blob_url": f"https://github.test/{full}/blob/{head}/{name}",
                "raw_url": f"https://github.test/{full}/raw/{head}/{name}",
                "contents_url": f"https://api.github.test/repos/{full}/contents/{name}?ref={head}",
            }
            if old is not None:
                entry["previous_filename"] = old
            if not binary and at >= 0:
                entry["patch"] = body[at + 1 :].rstrip("\n")
            entries.append(entry)
        return entries

    def op_get_repos_owner_repo_pulls_pull_number_files(self, p, q, b, login, r):
        pr = self._pr(p)
        git = self.repos[pr.repo]
        head = git.rev(f"refs/heads/{pr.head}")
        entries = self._diff_entries(pr.repo, git, f"refs/heads/{pr.base}", head) if head else []
        per_page, page = min(int(q.get("per_page", 30)), 100), max(int(q.get("page", 1)), 1)
        chunk = entries[(page - 1) * per_page : page * per_page]
        if page * per_page < len(entries):  # GitHub pages with a Link header; gidgethub follows it
            url = f"https://api.github.test/repos/{pr.repo}/pulls/{pr.number}/files"
            self._link = f'<{url}?per_page={per_page}&page={page + 1}>; rel="next"'
        return 200, chunk

    # --- pull requests ----------------------------------------------------------------------------

    def _pr_json(self, pr: PullRequest) -> dict[str, Any]:
        git = self.repos[pr.repo]
        owner = pr.repo.split("/")[0]
        head_sha = git.rev(f"refs/heads/{pr.head}") or "0" * 40
        user = _user(pr.user, "Bot")
        base_sha = git.rev(f"refs/heads/{pr.base}")
        mergeable, state = None, "unknown"
        if pr.state == "open" and not pr.merged and base_sha and head_sha != "0" * 40:
            clean = git.code("merge-tree", "--write-tree", base_sha, head_sha) == 0  # as GitHub's test merge
            mergeable, state = clean, ("draft" if pr.draft else "clean") if clean else "dirty"
        return {
            "id": pr.id,
            "node_id": pr.node_id,
            "number": pr.number,
            "state": pr.state,
            "title": pr.title,
            "body": pr.body,
            "draft": pr.draft,
            "merged": pr.merged,
            "mergeable": mergeable,
            "mergeable_state": state,
            "merge_commit_sha": pr.merge_commit_sha,
            "merged_by": _user(pr.merged_by) if pr.merged_by else None,
            "user": user,
            "html_url": f"https://github.test/{pr.repo}/pull/{pr.number}",
            "url": f"https://api.github.test/repos/{pr.repo}/pulls/{pr.number}",
            "labels": [
                {
                    "id": i + 1,
                    "node_id": f"L{i}",
                    "url": "https://api.github.test/l",
                    "name": n,
                    "color": "ededed",
                    "default": False,
                    "description": "",  # pull-request-simple's labels: a string, never null
                }
                for i, n in enumerate(pr.labels)
            ],
            "head": {
                "ref": pr.head,
                "sha": head_sha,
                "label": f"{owner}:{pr.head}",
                "user": user,
                "repo": self._repo_json(pr.repo),
            },
            "base": {
                "ref": pr.base,
                "sha": git.rev(f"refs/heads/{pr.base}"),
                "label": f"{owner}:{pr.base}",
                "user": user,
                "repo": self._repo_json(pr.repo),
            },
        }

    @staticmethod
    def _repo_json(full: str) -> dict[str, Any]:
        owner, name = full.split("/")
        return {"full_name": full, "name": name, "owner": _user(owner, "Organization"), "private": True}

    def _pr(self, p: dict[str, str]) -> PullRequest:
        full, _ = self._git(p)
        pr = self.pulls.get((full, int(p["pull_number"] if "pull_number" in p else p["issue_number"])))
        if pr is None:
            raise _NotFound
        return pr

    def op_get_repos_owner_repo_pulls(self, p, q, b, login, r):
        full, _ = self._git(p)
        state = q.get("state", "open")
        head = q.get("head")
        found = [
            self._pr_json(pr)
            for (repo, _), pr in sorted(self.pulls.items())
            if repo == full
            and (state == "all" or pr.state == state)
            and (head is None or f"{full.split('/')[0]}:{pr.head}" == head)
        ]
        return 200, found

    def op_post_repos_owner_repo_pulls(self, p, q, b, login, r):
        full, git = self._git(p)
        if git.rev(f"refs/heads/{b['head']}") is None:
            return 422, {
                "message": "Validation Failed",
                "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}],
                "documentation_url": "https://docs.github.com/rest",
            }
        for pr in self.pulls.values():
            if pr.repo == full and pr.head == b["head"] and pr.state == "open":
                return 422, {
                    "message": "Validation Failed",
                    "errors": [
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {full.split('/')[0]}:{b['head']}.",
                        }
                    ],
                    "documentation_url": "https://docs.github.com/rest",
                }
        number = next(self._numbers[full])
        pr = PullRequest(
            full,
            number,
            b["title"],
            b.get("body") or "",
            b["head"],
            b["base"],
            bool(b.get("draft")),
            login,
            next(self._ids),
        )
        self.pulls[(full, number)] = pr
        return 201, self._pr_json(pr)

    def op_get_repos_owner_repo_pulls_pull_number(self, p, q, b, login, r):
        return 200, self._pr_json(self._pr(p))

    def op_patch_repos_owner_repo_pulls_pull_number(self, p, q, b, login, r):
        pr = self._pr(p)
        for key in ("title", "body"):
            if key in b:
                setattr(pr, key, b[key])
        if b.get("state") in ("open", "closed") and b["state"] != pr.state and not pr.merged:
            pr.state = b["state"]
            self.emit_pr("closed" if pr.state == "closed" else "reopened", pr, login)
        return 200, self._pr_json(pr)

    def op_put_repos_owner_repo_pulls_pull_number_merge(self, p, q, b, login, r):
        pr = self._pr(p)
        refused, sha = self._merge(
            pr, b.get("sha"), b.get("merge_method", "merge"), b.get("commit_title"), login
        )
        if refused is not None:
            status = 409 if refused.startswith("Head branch was modified") else 405
            return status, {"message": refused, "documentation_url": "https://docs.github.com/rest"}
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

    def _merge(
        self, pr: PullRequest, expected: str | None, method: str, title: str | None, login: str
    ) -> tuple[str | None, str | None]:
        """GitHub's merge rules, for REST and GraphQL alike: (why it is refused, None) or (None, sha)."""
        refused, sha = self._merge_or_refuse(pr, expected, method, title, login)
        self.merges.append((login, refused))
        return refused, sha

    def _merge_or_refuse(
        self, pr: PullRequest, expected: str | None, method: str, title: str | None, login: str
    ) -> tuple[str | None, str | None]:
        git = self.repos[pr.repo]
        if pr.merged or pr.state != "open":
            return "Pull Request is not mergeable", None
        if pr.draft:
            return "Pull Request is still a draft", None
        head = git.rev(f"refs/heads/{pr.head}")
        if expected and expected != head:
            return "Head branch was modified. Review and try the merge again.", None
        base = git.rev(f"refs/heads/{pr.base}")
        merged = subprocess.run(
            ["git", "--git-dir", str(git.path), "merge-tree", "--write-tree", base, head],
            capture_output=True,
            check=False,
        )
        if merged.returncode != 0:
            return "Pull Request is not mergeable", None
        tree = merged.stdout.decode().split()[0]
        parents = ["-p", base] + (["-p", head] if method == "merge" else [])
        title = title or f"Merge pull request #{pr.number}"
        env = _who_env({"name": login, "email": f"{login}@users.noreply.github.test", "date": None})
        sha = git.run("commit-tree", tree, *parents, "-m", title, env=env).strip()
        git.run("update-ref", f"refs/heads/{pr.base}", sha, base)
        pr.merged, pr.state, pr.merged_by, pr.merge_commit_sha, pr.draft = True, "closed", login, sha, False
        self.emit_pr("closed", pr, login)
        self._close_referenced_issues(pr, login)
        return None, sha

    def op_get_repos_owner_repo_pulls_pull_number_comments(self, p, q, b, login, r):
        pr = self._pr(p)
        mine = [c for c in self.review_comments if c["_pr"] == (pr.repo, pr.number)]
        return 200, [{k: v for k, v in c.items() if not k.startswith("_")} for c in mine]

    def op_post_repos_owner_repo_pulls_pull_number_comments(self, p, q, b, login, r):
        """One review comment on a line, as GitHub takes it: the commit must be one of the PR's and the
        line must be in the diff of `path` on `side` (LEFT: the base's numbering), else 422."""
        pr = self._pr(p)
        git = self.repos[pr.repo]
        head = git.rev(f"refs/heads/{pr.head}")
        base = git.rev(f"refs/heads/{pr.base}")
        commit = b.get("commit_id") or head
        if git.code("merge-base", "--is-ancestor", commit, head or "") != 0:
            return 422, {
                "message": "Validation Failed",
                "errors": ["commit_id is not part of the pull request"],
            }
        side = b.get("side", "RIGHT")
        diff = git.run("diff", f"{base}...{commit}", "--", b.get("path", ""))
        if not _line_in_diff(diff, int(b.get("line") or 0), side):
            return 422, {
                "message": "Validation Failed",
                "errors": ["pull_request_review_thread.line must be part of the diff"],
            }
        review = {"id": next(self._ids)}
        comment = self._review_comment(pr, review, b, login, commit)
        comment.update(side=side, start_line=b.get("start_line"), start_side=b.get("start_side"))
        self.review_comments.append(comment)
        self._emit_review_comment(pr, comment)
        return 201, {k: v for k, v in comment.items() if not k.startswith("_")}

    def op_post_repos_owner_repo_pulls_pull_number_reviews(self, p, q, b, login, r):
        """A person reviews: the review and its inline comments are stored and their webhooks queued."""
        pr = self._pr(p)
        git = self.repos[pr.repo]
        state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}[
            b.get("event", "COMMENT")
        ]
        head = git.rev(f"refs/heads/{pr.head}")
        review = {
            "id": next(self._ids),
            "node_id": "PRR_fake",
            "user": _user(login),
            "body": b.get("body") or "",
            "state": state,
            "commit_id": b.get("commit_id") or head,
            "html_url": f"https://github.test/{pr.repo}/pull/{pr.number}#review",
            "pull_request_url": f"https://api.github.test/repos/{pr.repo}/pulls/{pr.number}",
            "author_association": "MEMBER",
            "_links": {
                "html": {"href": "https://github.test/r"},
                "pull_request": {"href": "https://github.test/p"},
            },
            "submitted_at": "2024-01-01T00:00:00Z",
        }
        self.reviews.append(review)
        new_comments = []
        for c in b.get("comments", []):
            comment = self._review_comment(pr, review, c, login, head)
            self.review_comments.append(comment)
            new_comments.append(comment)
        for comment in new_comments:
            self._emit_review_comment(pr, comment)
        self._emit_review(pr, review)
        return 200, review

    def op_delete_repos_owner_repo_pulls_pull_number_requested_reviewers(self, p, q, b, login, r):
        """Removing review requests: a login not requested is no error; each removed one gets its
        `review_request_removed` webhook. Requesting it again then notifies it anew."""
        pr = self._pr(p)
        removing = {u.lower() for u in b.get("reviewers") or []}
        for who in [u for u in pr.requested_reviewers if u.lower() in removing]:
            pr.requested_reviewers.remove(who)
            self._emit_review_request(pr, "review_request_removed", who, login)
        return 200, self._with_requested_reviewers(pr)

    def op_post_repos_owner_repo_pulls_pull_number_requested_reviewers(self, p, q, b, login, r):
        """Review requests, as GitHub takes them: all or nothing, 422 (no body, as documented) when a
        login is not a collaborator (`permissions[login] == "none"`) or is the PR's author; a login
        already requested changes nothing (teams are not modelled). Each new one gets its `review_requested`
        webhook."""
        pr = self._pr(p)
        logins = list(b.get("reviewers") or [])
        if any(self.permissions.get(u) == "none" or u.lower() == pr.user.lower() for u in logins):
            return 422, None
        for who in logins:
            if who.lower() not in {u.lower() for u in pr.requested_reviewers}:
                pr.requested_reviewers.append(who)
                self._emit_review_request(pr, "review_requested", who, login)
        return 201, self._with_requested_reviewers(pr)

    def _emit_review_request(self, pr: PullRequest, action: str, who: str, login: str) -> None:
        """The `pull_request` webhook for one reviewer requested or removed, from GitHub's example."""
        payload = example("pull_request", action)
        self._repository(pr.repo, payload)
        self._pr_payload(pr, payload["pull_request"])
        payload["requested_reviewer"] = {**payload.get("requested_reviewer", {}), **_user(who)}
        payload["sender"]["login"] = login
        self.emit("pull_request", payload)

    def _with_requested_reviewers(self, pr: PullRequest) -> dict[str, Any]:
        answer = self._pr_json(pr)
        answer["requested_reviewers"] = [_user(u) for u in pr.requested_reviewers]
        return answer

    def _review_comment(
        self, pr: PullRequest, review: dict[str, Any], c: dict[str, Any], login: str, head: str
    ) -> dict[str, Any]:
        git = self.repos[pr.repo]
        base = git.rev(f"refs/heads/{pr.base}")
        diff = git.run("diff", f"{base}...{head}", "--", c["path"])
        hunk = diff[diff.find("@@") :] if "@@" in diff else ""
        cid = next(self._ids)
        return {
            "_pr": (pr.repo, pr.number),
            "id": cid,
            "node_id": f"PRRC_{cid}",
            "url": f"https://api.github.test/repos/{pr.repo}/pulls/comments/{cid}",
            "pull_request_review_id": review["id"],
            "diff_hunk": hunk,
            "path": c["path"],
            "line": c.get("line"),
            "side": "RIGHT",
            "commit_id": head,
            "original_commit_id": head,
            "user": _user(login),
            "body": c["body"],
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "html_url": f"https://github.test/{pr.repo}/pull/{pr.number}#discussion_r{cid}",
            "pull_request_url": f"https://api.github.test/repos/{pr.repo}/pulls/{pr.number}",
            "author_association": "MEMBER",
            "_links": {
                "self": {"href": "https://github.test/s"},
                "html": {"href": "https://github.test/h"},
                "pull_request": {"href": "https://github.test/p"},
            },
        }

    # --- issues: labels and comments --------------------------------------------------------------

    def op_post_repos_owner_repo_issues_issue_number_labels(self, p, q, b, login, r):
        if (issue := self._issue(p)) is not None:
            return self._add_issue_labels(issue, b.get("labels", []), login)
        pr = self._pr(p)
        for name in b.get("labels", []):
            if name not in pr.labels:
                pr.labels.append(name)
        return 200, self._pr_json(pr)["labels"]

    def op_get_repos_owner_repo_issues_issue_number_comments(self, p, q, b, login, r):
        if (issue := self._issue(p)) is not None:
            return 200, [
                {k: v for k, v in c.items() if not k.startswith("_")}
                for c in self.comments
                if c["_pr"] == (issue.repo, issue.number)
            ]
        pr = self._pr(p)
        return 200, [
            {k: v for k, v in c.items() if not k.startswith("_")}
            for c in self.comments
            if c["_pr"] == (pr.repo, pr.number)
        ]

    def op_post_repos_owner_repo_issues_issue_number_comments(self, p, q, b, login, r):
        if (issue := self._issue(p)) is not None:
            return self._comment_on_issue(issue, b, login)
        return 201, self._comment_on_pr(self._pr(p), b["body"], login)

    def _comment_on_pr(self, pr: PullRequest, body: str, login: str) -> dict[str, Any]:
        cid = next(self._ids)
        comment = {
            "_pr": (pr.repo, pr.number),
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"https://api.github.test/repos/{pr.repo}/issues/comments/{cid}",
            "html_url": f"https://github.test/{pr.repo}/pull/{pr.number}#issuecomment-{cid}",
            "issue_url": f"https://api.github.test/repos/{pr.repo}/issues/{pr.number}",
            "body": body,
            "user": _user(login, "Bot" if login == BOT else "User"),
            # When it was written (OSIRIS compares it with when it pushed a version). GitHub sends
            # whole seconds; the fake keeps microseconds so a test's back-to-back steps stay ordered.
            "created_at": _now_iso(),
            "updated_at": _now_iso(),
            "author_association": "MEMBER",
        }
        self.comments.append(comment)
        self._emit_issue_comment(pr, comment)
        return {k: v for k, v in comment.items() if not k.startswith("_")}

    # --- plain issues (GitHub issues as requests) ------------------------------------------------

    def _issue(self, p: dict[str, str]) -> Issue | None:
        full, _ = self._git(p)
        return self.issues.get((full, int(p["issue_number"])))

    def _issue_json(self, issue: Issue) -> dict[str, Any]:
        base = f"https://api.github.test/repos/{issue.repo}/issues/{issue.number}"
        return {
            "id": issue.id,
            "node_id": f"I_{issue.id}",
            "url": base,
            "repository_url": f"https://api.github.test/repos/{issue.repo}",
            "labels_url": f"{base}/labels{{/name}}",
            "comments_url": f"{base}/comments",
            "events_url": f"{base}/events",
            "html_url": f"https://github.test/{issue.repo}/issues/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "title": issue.title,
            "body": issue.body,
            "user": _user(issue.user),
            "labels": [self._label_json(i, n) for i, n in enumerate(issue.labels)],
            "assignee": None,
            "milestone": None,
            "locked": False,
            "comments": sum(1 for c in self.comments if c["_pr"] == (issue.repo, issue.number)),
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "closed_at": "2024-01-01T00:00:00Z" if issue.state == "closed" else None,
            "author_association": "CONTRIBUTOR",
        }

    @staticmethod
    def _label_json(i: int, name: str) -> dict[str, Any]:
        return {
            "id": i + 1,
            "node_id": f"L{i}",
            "url": "https://api.github.test/l",
            "name": name,
            "color": "ededed",
            "default": False,
            "description": None,
        }

    def emit_issue(self, action: str, issue: Issue, sender: str, *, label: str | None = None) -> str:
        """An `issues` webhook from GitHub's own example for the action, patched with the issue."""
        try:
            payload = example("issues", action)
        except KeyError:  # the examples have no `closed`: GitHub sends the same shape as `reopened`
            payload = example("issues", "reopened")
            payload["action"] = action
        self._repository(issue.repo, payload)
        payload["issue"] = {**payload["issue"], **self._issue_json(issue)}
        payload["issue"].pop("pull_request", None)
        payload["sender"]["login"] = sender
        if label is not None:
            payload["label"] = self._label_json(0, label)
        else:
            payload.pop("label", None)
        return self.emit("issues", payload)

    def op_post_repos_owner_repo_issues(self, p, q, b, login, r):
        full, _ = self._git(p)
        issue = Issue(
            full, next(self._numbers[full]), b["title"], b.get("body") or "", login, next(self._ids)
        )
        issue.labels = [n if isinstance(n, str) else n["name"] for n in b.get("labels", [])]
        self.issues[(full, issue.number)] = issue
        self.emit_issue("opened", issue, login)
        for name in issue.labels:  # GitHub sends `labeled` for labels given at creation, too
            self.emit_issue("labeled", issue, login, label=name)
        return 201, self._issue_json(issue)

    def op_get_repos_owner_repo_issues_issue_number(self, p, q, b, login, r):
        issue = self._issue(p)
        if issue is None:
            raise _NotFound
        return 200, self._issue_json(issue)

    def op_patch_repos_owner_repo_issues_issue_number(self, p, q, b, login, r):
        issue = self._issue(p)
        if issue is None:
            raise _NotFound
        for key in ("title", "body"):
            if key in b:
                setattr(issue, key, b[key])
        if b.get("state") in ("open", "closed") and b["state"] != issue.state:
            issue.state = b["state"]
            self.emit_issue("closed" if issue.state == "closed" else "reopened", issue, login)
        return 200, self._issue_json(issue)

    def _add_issue_labels(self, issue: Issue, names: list[Any], login: str) -> tuple[int, Any]:
        for name in names:
            name = name if isinstance(name, str) else name["name"]
            if name not in issue.labels:
                issue.labels.append(name)
                self.emit_issue("labeled", issue, login, label=name)
        return 200, [self._label_json(i, n) for i, n in enumerate(issue.labels)]

    def op_delete_repos_owner_repo_issues_issue_number_labels(self, p, q, b, login, r):
        issue = self._issue(p)
        if issue is None:
            raise _NotFound
        removed, issue.labels = issue.labels, []
        for name in removed:
            self.emit_issue("unlabeled", issue, login, label=name)
        return 204, None

    def _comment_on_issue(self, issue: Issue, b: dict[str, Any], login: str) -> tuple[int, Any]:
        cid = next(self._ids)
        comment = {
            "_pr": (issue.repo, issue.number),
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"https://api.github.test/repos/{issue.repo}/issues/comments/{cid}",
            "html_url": f"https://github.test/{issue.repo}/issues/{issue.number}#issuecomment-{cid}",
            "issue_url": f"https://api.github.test/repos/{issue.repo}/issues/{issue.number}",
            "body": b["body"],
            "user": _user(login, "Bot" if login == BOT else "User"),
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "author_association": "MEMBER",
        }
        self.comments.append(comment)
        payload = example("issue_comment", "created")
        self._repository(issue.repo, payload)
        payload["issue"] = {**payload["issue"], **self._issue_json(issue)}
        payload["issue"].pop("pull_request", None)
        payload["comment"].update({"id": cid, "body": b["body"], "html_url": comment["html_url"]})
        payload["comment"]["user"] = {**payload["comment"]["user"], "login": login}
        payload["sender"]["login"] = login
        self.emit("issue_comment", payload)
        return 201, {k: v for k, v in comment.items() if not k.startswith("_")}

    def _close_referenced_issues(self, pr: PullRequest, login: str) -> None:
        """What GitHub does on merge into the default branch: `Closes #N` in the body closes issue N."""
        for number in _CLOSING.findall(pr.body or ""):
            issue = self.issues.get((pr.repo, int(number)))
            if issue is not None and issue.state == "open":
                issue.state = "closed"
                self.emit_issue("closed", issue, login)

    def op_get_repos_owner_repo_collaborators_username_permission(self, p, q, b, login, r):
        self._git(p)
        permission = self.permissions.get(p["username"], "read")
        role = {"admin": "admin", "write": "write"}.get(permission, "read")
        return 200, {"permission": permission, "role_name": role, "user": _user(p["username"])}

    def op_post_app_installations_installation_id_access_tokens(self, p, q, b, login, r):
        key = self.installations.get(p["installation_id"])
        auth = r.headers.get("authorization", "")
        try:
            jwt.decode(auth.partition(" ")[2], key, algorithms=["RS256"]) if key else None
        except jwt.PyJWTError:
            key = None
        if key is None:
            return 401, {
                "message": "A JSON web token could not be decoded",
                "documentation_url": "https://docs.github.com/rest",
            }
        token = f"ghs_{uuid.uuid4().hex}"
        self.tokens[token] = BOT
        claims = jwt.decode(auth.partition(" ")[2], options={"verify_signature": False})
        self.app_tokens[token] = int(claims["iss"])
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        return 201, {
            "token": token,
            "expires_at": expires,
            "permissions": {},
            "repository_selection": "selected",
        }

    # --- checks: check runs (GitHub Apps only) and commit statuses -------------------------------

    def _check_run_json(self, full: str, run: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: v for k, v in run.items() if not k.startswith("_")},
            "url": f"https://api.github.test/repos/{full}/check-runs/{run['id']}",
            "html_url": f"https://github.test/{full}/runs/{run['id']}",
        }

    def _emit_check_run(self, full: str, run: dict[str, Any], action: str) -> None:
        payload = example("check_run", "completed" if action == "completed" else "created")
        self._repository(full, payload)
        payload["check_run"] = {**payload["check_run"], **self._check_run_json(full, run)}
        payload["sender"]["login"] = BOT
        self.emit("check_run", payload)

    def op_post_repos_owner_repo_check_runs(self, p, q, b, login, r):
        full, git = self._git(p)
        app_id = self.app_tokens.get(r.headers.get("authorization", "").partition(" ")[2])
        if app_id is None:  # as on GitHub: "You must authenticate via a GitHub App."
            self.violations.append("POST check-runs without a GitHub App installation token")
            return 403, {"message": "You must authenticate via a GitHub App.", "documentation_url": "x"}
        if git.commit_info(b["head_sha"]) is None:
            return 422, {"message": "No commit found for SHA", "documentation_url": "x"}
        status = "completed" if b.get("conclusion") else b.get("status", "queued")
        run = {
            "id": next(self._ids),
            "node_id": "CR_fake",
            "head_sha": b["head_sha"],
            "name": b["name"],
            "external_id": b.get("external_id"),
            "details_url": b.get("details_url"),
            "status": status,
            "conclusion": b.get("conclusion"),
            "started_at": b.get("started_at"),
            "completed_at": b.get("completed_at"),
            "output": {
                "title": (b.get("output") or {}).get("title"),
                "summary": (b.get("output") or {}).get("summary"),
                "text": (b.get("output") or {}).get("text"),
                "annotations_count": 0,
                "annotations_url": "https://api.github.test/annotations",
            },
            "check_suite": {"id": 1},
            "app": {"id": app_id, "slug": "osiris", "node_id": "A_osiris", "name": "OSIRIS"},
            "pull_requests": [],
            "_repo": full,
        }
        self.check_runs[run["id"]] = run
        self._emit_check_run(full, run, "created")
        if status == "completed":
            self._emit_check_run(full, run, "completed")
        return 201, self._check_run_json(full, run)

    def _check_run(self, p: dict[str, str]) -> tuple[str, dict[str, Any]]:
        full, _ = self._git(p)
        run = self.check_runs.get(int(p["check_run_id"]))
        if run is None or run["_repo"] != full:
            raise _NotFound
        return full, run

    def op_get_repos_owner_repo_check_runs_check_run_id(self, p, q, b, login, r):
        full, run = self._check_run(p)
        return 200, self._check_run_json(full, run)

    def op_patch_repos_owner_repo_check_runs_check_run_id(self, p, q, b, login, r):
        full, run = self._check_run(p)
        if self.app_tokens.get(r.headers.get("authorization", "").partition(" ")[2]) != run["app"]["id"]:
            self.violations.append("PATCH check-runs by another App than the one that created it")
            return 403, {"message": "Invalid app_id", "documentation_url": "x"}
        was = run["status"]
        for key in ("name", "details_url", "external_id", "started_at", "completed_at", "conclusion"):
            if key in b:
                run[key] = b[key]
        run["status"] = "completed" if b.get("conclusion") else b.get("status", run["status"])
        for key in ("title", "summary", "text"):
            if key in (b.get("output") or {}):
                run["output"][key] = b["output"][key]
        if run["status"] == "completed" and was != "completed":
            self._emit_check_run(full, run, "completed")
        return 200, self._check_run_json(full, run)

    def op_post_repos_owner_repo_statuses_sha(self, p, q, b, login, r):
        full, git = self._git(p)
        if git.commit_info(p["sha"]) is None:
            return 422, {"message": "No commit found for SHA", "documentation_url": "x"}
        status = {
            "id": next(self._ids),
            "node_id": "SC_fake",
            "url": f"https://api.github.test/repos/{full}/statuses/{p['sha']}",
            "state": b["state"],
            "context": b.get("context", "default"),
            "description": b.get("description"),
            "target_url": b.get("target_url"),
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "creator": _user(login, "Bot" if login == BOT else "User"),
            "avatar_url": None,
            "_sha": p["sha"],
            "_repo": full,
        }
        self.statuses.append(status)
        payload = example("status")
        self._repository(full, payload)
        payload.update({k: status[k] for k in ("id", "state", "context", "description", "target_url")})
        payload["sha"] = p["sha"]
        payload["sender"]["login"] = login
        self.emit("status", payload)
        return 201, {k: v for k, v in status.items() if not k.startswith("_")}

    def latest_statuses(self, full: str, sha: str) -> dict[str, str]:
        """context -> state, the latest of each, as GitHub's combined status shows them."""
        out: dict[str, str] = {}
        for st in self.statuses:
            if st["_repo"] == full and st["_sha"] == sha:
                out[st["context"]] = st["state"]
        return out

    # --- git smart HTTP (clone and fetch), for the checks' cache clones ---------------------------

    def serve_git(self) -> str:
        """Serve the backing bare repositories read-only over real HTTP (`git http-backend` as CGI),
        at `{url}/{owner}/{repo}.git`; a request must carry a known token as HTTP Basic auth, as
        GitHub wants it (`x-access-token:<token>`). Returns the base URL."""
        if self._git_server is None:
            self._git_server = _GitHTTPServer(self)
        return self._git_server.url

    def stop_git(self) -> None:
        if self._git_server is not None:
            self._git_server.stop()
            self._git_server = None

    # --- GraphQL: the documents OSIRIS sends ------------------------------------------------------
    # GitHub runs a document's mutations in turn; one that fails is null in `data`, with an error
    # naming its alias in `path`, and the others still run (GraphQL's rule for nullable fields).

    def _graphql(self, body: dict[str, Any], login: str | None) -> httpx.Response:
        if login is None:
            return _json(401, {"message": "Bad credentials"})
        query = body.get("query", "")
        variables = body.get("variables") or {}
        if query.lstrip().startswith("query") and "ref(qualifiedName:" in query:
            return _json(200, self._graphql_ref_files(query, variables))
        fields = _GRAPHQL_MUTATION_FIELD.findall(query) if query.lstrip().startswith("mutation") else []
        unknown = [name for _, name, _ in fields if name not in _GRAPHQL_MUTATIONS]
        if not fields or unknown:
            self.violations.append(f"graphql: unsupported document {query[:80]!r}")
            return _json(200, {"errors": [{"message": "unsupported by the fake"}]})
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for alias, name, args in fields:
            key = alias or name
            given = {k: variables.get(v) for k, v in re.findall(r"(\w+)\s*:\s*\$(\w+)", args)}
            try:
                data[key] = getattr(self, "_gql_" + re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower())(
                    given, login
                )
            except _GraphQLError as exc:
                data[key] = None
                errors.append({"type": exc.kind, "path": [key], "message": str(exc)})
        return _json(200, {"data": data, **({"errors": errors} if errors else {})})

    def _gql_node(self, node: Any) -> PullRequest:
        pr = next((pr for pr in self.pulls.values() if pr.node_id == node), None)
        if pr is None:
            raise _GraphQLError("NOT_FOUND", f"Could not resolve to a node with the global id of '{node}'")
        return pr

    def _gql_mark_pull_request_ready_for_review(self, given: dict[str, Any], login: str) -> dict[str, Any]:
        pr = self._gql_node(given.get("pullRequestId"))
        if pr.state != "open":
            raise _GraphQLError("UNPROCESSABLE", "Pull request is closed")
        pr.draft = False
        return {"pullRequest": {"isDraft": False}}

    def _gql_merge_pull_request(self, given: dict[str, Any], login: str) -> dict[str, Any]:
        pr = self._gql_node(given.get("pullRequestId"))
        method = str(given.get("mergeMethod") or "MERGE").lower()
        if method not in ("merge", "squash", "rebase"):
            raise _GraphQLError("UNPROCESSABLE", f"Invalid merge method {given.get('mergeMethod')!r}")
        refused, sha = self._merge(
            pr, given.get("expectedHeadOid"), method, given.get("commitHeadline"), login
        )
        if refused is not None:
            raise _GraphQLError("UNPROCESSABLE", refused)
        return {"pullRequest": {"merged": True, "mergeCommit": {"oid": sha}}}

    def _gql_update_pull_request(self, given: dict[str, Any], login: str) -> dict[str, Any]:
        pr = self._gql_node(given.get("pullRequestId"))
        for key in ("title", "body"):
            if given.get(key) is not None:
                setattr(pr, key, given[key])
        return {"pullRequest": {"id": pr.node_id}}

    def _gql_add_comment(self, given: dict[str, Any], login: str) -> dict[str, Any]:
        pr = self._gql_node(given.get("subjectId"))
        if not given.get("body"):
            raise _GraphQLError("UNPROCESSABLE", "Body can't be blank")
        comment = self._comment_on_pr(pr, given["body"], login)
        return {"commentEdge": {"node": {"databaseId": comment["id"], "id": comment["node_id"]}}}

    def _graphql_ref_files(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """`repository(owner, name) { ref(qualifiedName) { target { ... on Commit { oid message
        tree { oid } fN: file(path: $pN) { type object { ... on Blob { text isBinary isTruncated
        byteSize } } } } } } }`: a branch head and some of its files, as one snapshot."""
        full = f"{variables.get('owner')}/{variables.get('name')}"
        if full not in self.repos:
            message = f"Could not resolve to a Repository with the name '{full}'."
            return {
                "data": {"repository": None},
                "errors": [{"type": "NOT_FOUND", "path": ["repository"], "message": message}],
            }
        git = self.repos[full]
        qualified = str(variables.get("ref") or "")
        sha = git.rev(qualified) if qualified.startswith("refs/") else git.rev(f"refs/heads/{qualified}")
        if sha is None:
            return {"data": {"repository": {"ref": None}}}
        info = git.commit_info(sha)
        assert info is not None
        target: dict[str, Any] = {"oid": sha, "message": info["message"], "tree": {"oid": info["tree"]}}
        for alias, var in re.findall(r"(\w+)\s*:\s*file\(path:\s*\$(\w+)\)", query):
            path = str(variables.get(var) or "")
            kind = git.run("cat-file", "-t", f"{sha}:{path}", ok=(0, 128)).strip() if path else ""
            if kind not in ("blob", "tree"):
                target[alias] = None  # no such path in that commit
                continue
            entry: dict[str, Any] = {"type": kind, "object": {}}
            if kind == "blob":
                raw = subprocess.run(
                    ["git", "--git-dir", str(git.path), "cat-file", "blob", f"{sha}:{path}"],
                    capture_output=True,
                    check=True,
                ).stdout
                try:
                    text: str | None = raw.decode()
                except UnicodeDecodeError:
                    text = None
                binary = text is None or "\0" in text
                truncated = not binary and len(raw) > _GRAPHQL_TEXT_LIMIT
                if truncated:
                    text = raw[:_GRAPHQL_TEXT_LIMIT].decode(errors="ignore")
                entry["object"] = {
                    "text": None if binary else text,
                    "isBinary": binary,
                    "isTruncated": truncated,
                    "byteSize": len(raw),
                }
            target[alias] = entry
        return {"data": {"repository": {"ref": {"target": target}}}}


def graphql_operation(raw: bytes) -> str:
    """What a GraphQL request does, for fault patterns and the log: its top-level mutation fields
    ("markPullRequestReadyForReview mergePullRequest"), or "query"."""
    try:
        query = str((json.loads(raw) or {}).get("query") or "")
    except (json.JSONDecodeError, AttributeError):
        return "?"
    if not query.lstrip().startswith("mutation"):
        return "query"
    return " ".join(name for _, name, _ in _GRAPHQL_MUTATION_FIELD.findall(query))


_GRAPHQL_MUTATIONS = {"markPullRequestReadyForReview", "mergePullRequest", "updatePullRequest", "addComment"}
# `alias: name(input: {...})` at the top of a mutation (the inputs OSIRIS sends hold no nested braces)
_GRAPHQL_MUTATION_FIELD = re.compile(r"(?:(\w+)\s*:\s*)?(\w+)\s*\(\s*input:\s*\{([^{}]*)\}")
_GRAPHQL_TEXT_LIMIT = 512 * 1024  # GitHub truncates a Blob's text past this (isTruncated)


class _GraphQLError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _NotFound(Exception):
    pass


class _GitHTTPServer:
    """A real HTTP server on 127.0.0.1 that runs `git http-backend` for the fake's repositories."""

    def __init__(self, fake: FakeGitHub) -> None:
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.handle(self)

            def do_POST(self) -> None:  # noqa: N802
                outer.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.fake = fake
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _login(self, header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, token = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        return self.fake.tokens.get(token) if user == "x-access-token" else None

    def handle(self, h: Any) -> None:
        path, _, query = h.path.partition("?")
        login = self._login(h.headers.get("Authorization", ""))
        self.fake.git_requests.append((h.command, path, login))
        m = re.match(r"^/([^/]+)/([^/]+?)\.git(/info/refs|/git-upload-pack)$", path)
        repo = self.fake.repos.get(f"{m.group(1)}/{m.group(2)}") if m else None
        if login is None:
            return self._reply(h, 401, b"Bad credentials", {"WWW-Authenticate": 'Basic realm="GitHub"'})
        if repo is None or "git-receive-pack" in h.path:
            return self._reply(h, 404 if repo is None else 403, b"Not found", {})
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(h.rfile.readline().strip() or b"0", 16):
                body += h.rfile.read(size)
                h.rfile.readline()
            h.rfile.readline()
        else:
            body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(repo.path.parent),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo.path.name}{m.group(3)}",
            "QUERY_STRING": query,
            "REQUEST_METHOD": h.command,
            "CONTENT_TYPE": h.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": login,
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": h.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": h.headers.get("Content-Encoding", ""),
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, _, content = out.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, content = out.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers[key] = value.strip()
        self._reply(h, status, content, headers)

    @staticmethod
    def _reply(h: Any, status: int, content: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(content)))
        h.end_headers()
        h.wfile.write(content)


class _Transport(httpx.AsyncBaseTransport):
    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await self.fake.answer(request)
        response.request = request
        return response


def _line_in_diff(diff: str, line: int, side: str) -> bool:
    """Whether `line` (old numbering for LEFT, new for RIGHT) is a line of one of the diff's hunks."""
    old = new = 0
    in_hunk = False
    for row in diff.splitlines():
        if row.startswith("@@"):
            m = re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", row)
            if m is None:
                return False
            old, new, in_hunk = int(m.group(1)), int(m.group(2)), True
            continue
        if not in_hunk or row.startswith("\\"):
            continue
        kind = row[:1]
        if kind in (" ", "-") and side == "LEFT" and old == line:
            return True
        if kind in (" ", "+") and side == "RIGHT" and new == line:
            return True
        old += kind in (" ", "-")
        new += kind in (" ", "+")
    return False


def _json(status: int, body: Any) -> httpx.Response:
    headers = {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "4999",
        "x-ratelimit-reset": str(int(time.time()) + 3600),
    }
    if status == 204 or body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers={**headers, **API_VERSION_HEADER})


def _fault_response(kind: str) -> httpx.Response:
    doc = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
    if kind == "500":
        return httpx.Response(500, json={"message": "Server Error"})
    if kind == "429":
        return httpx.Response(429, json={"message": "Too many requests"}, headers={"retry-after": "1"})
    if kind == "secondary":
        return httpx.Response(
            403,
            json={"message": "You have exceeded a secondary rate limit.", "documentation_url": doc},
            headers={"retry-after": "1"},
        )
    reset = str(int(time.time()) + 1)
    return httpx.Response(
        403,
        json={"message": "API rate limit exceeded", "documentation_url": doc},
        headers={"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
    )


def _user(login: str, kind: str = "User") -> dict[str, Any]:
    return {
        "login": login,
        "id": abs(hash(login)) % 10**6 + 1,
        "node_id": f"U_{login}",
        "type": kind,
        "site_admin": False,
        "avatar_url": "https://github.test/a",
        "html_url": f"https://github.test/{login}",
        "url": f"https://api.github.test/users/{login}",
    }


def _ref(full: str, ref: str, sha: str) -> dict[str, Any]:
    return {
        "ref": ref,
        "node_id": "REF_x",
        "url": f"https://api.github.test/repos/{full}/git/{ref}",
        "object": {
            "type": "commit",
            "sha": sha,
            "url": f"https://api.github.test/repos/{full}/git/commits/{sha}",
        },
    }


def _commit(full: str, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "sha": info["sha"],
        "node_id": f"C_{info['sha'][:12]}",
        "url": f"https://api.github.test/repos/{full}/git/commits/{info['sha']}",
        "html_url": f"https://github.test/{full}/commit/{info['sha']}",
        "author": info["author"],
        "committer": info["committer"],
        "message": info["message"],
        "tree": {
            "sha": info["tree"],
            "url": f"https://api.github.test/repos/{full}/git/trees/{info['tree']}",
        },
        "parents": [
            {"sha": s, "url": "https://api.github.test/c", "html_url": "https://github.test/c"}
            for s in info["parents"]
        ],
        "verification": {
            "verified": False,
            "reason": "unsigned",
            "signature": None,
            "payload": None,
            "verified_at": None,
        },
    }


def _rest_commit(full: str, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "sha": info["sha"],
        "node_id": "C_x",
        "url": "https://api.github.test/c",
        "html_url": "https://github.test/c",
        "comments_url": "https://api.github.test/cc",
        "commit": {
            "message": info["message"],
            "tree": {"sha": info["tree"], "url": "https://api.github.test/t"},
            "author": info["author"],
            "committer": info["committer"],
            "url": "https://api.github.test/c",
            "comment_count": 0,
        },
        "parents": [{"sha": s, "url": "https://api.github.test/c"} for s in info["parents"]],
        "author": None,
        "committer": None,
    }


def _who_env(who: dict[str, Any]) -> dict[str, str]:
    env = {
        "GIT_AUTHOR_NAME": who["name"],
        "GIT_AUTHOR_EMAIL": who["email"],
        "GIT_COMMITTER_NAME": who["name"],
        "GIT_COMMITTER_EMAIL": who["email"],
    }
    if who.get("date"):
        env |= {"GIT_AUTHOR_DATE": who["date"], "GIT_COMMITTER_DATE": who["date"]}
    return env


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
