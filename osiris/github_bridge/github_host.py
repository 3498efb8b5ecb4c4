"""GitHub as the code host: each artifact version a commit on `osiris/task-<id>`, one draft PR per task.

Commits are built with the Git Data API from the touched files only (a tree with `base_tree`), so a
publish costs the same on a ten-file repository as on a huge one. Every step is safe to repeat: a
commit is a pure function of (parent, tree, message, fixed dates), so a retried job recreates the
same object; refs are created or fast-forwarded; a PR is looked up before one is created; a comment
is posted once per key (an intent is recorded first, and a retry looks for the comment's marker).
Transient failures surface as `jobs.Retry` (from the client), so the queue runs the job again later.
"""

from __future__ import annotations

import base64
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from gidgethub import BadRequest, GraphQLException
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from osiris.app.actors import system_actor
from osiris.app.artifacts import ValidArtifact
from osiris.app.check_config import REPO_CONFIG
from osiris.app.config import Settings
from osiris.app.errors import InvalidInput, NotFound, PatchDoesNotApply, Unavailable
from osiris.app.events import record_event
from osiris.app.jobs import Retry
from osiris.app.models import Artifact, ArtifactKind, Message, Repository, Role, Task, TaskEvent, User
from osiris.app.ports import MergeConflict, branch_name
from osiris.github_bridge import check_reports, diffs, github_patch
from osiris.github_bridge.checkout_cache import CheckoutCache
from osiris.github_bridge.github_client import GitHub, GitHubUnavailable, repo_path

TRAILER = "Osiris-Artifact"
_TRAILER_RE = re.compile(rf"^{TRAILER}: (\d+)\s*$", re.MULTILINE)
INTENT_EVENT = "github_intent"
BASE_FILE_TTL_SECONDS = 30.0  # `.osiris.yml` read through the API is reused this long
CHECKED_BASE_TTL_SECONDS = 60.0  # a first version is built on the base commit its check read, this soon
# Ready for review and the merge in one document (issue 17): GitHub runs the two in turn, and the
# merge is pinned to the approved head (`expectedHeadOid`), so a push after the approval fails it.
MERGE_MUTATION = """
mutation($id: ID!, $head: GitObjectID!, $method: PullRequestMergeMethod!, $title: String) {
  ready: markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } }
  merge: mergePullRequest(
    input: {pullRequestId: $id, expectedHeadOid: $head, mergeMethod: $method, commitHeadline: $title}
  ) { pullRequest { merged mergeCommit { oid } } }
}
"""
# A later version: the PR body's version table and the "version N pushed" comment in one document.
VERSION_MUTATION = """
mutation($id: ID!, $body: String!, $comment: String!) {
  body: updatePullRequest(input: {pullRequestId: $id, body: $body}) { pullRequest { id } }
  comment: addComment(input: {subjectId: $id, body: $comment}) { commentEdge { node { databaseId } } }
}
"""


def marker(key: str) -> str:
    """An invisible tag in every comment OSIRIS writes: finds it again, and skips its webhook echo."""
    return f"<!-- osiris:{key} -->"


def is_ours(body: str | None) -> bool:
    return bool(body) and "<!-- osiris:" in body  # type: ignore[operator]


def trailer_artifact(message: str | None) -> int | None:
    found = _TRAILER_RE.findall(message or "")
    return int(found[-1]) if found else None


@dataclass(frozen=True, slots=True)
class Head:
    sha: str
    tree: str
    message: str = ""


def _status(exc: BadRequest) -> int:
    return int(exc.status_code)


def _review_comment_position(meta: dict[str, Any]) -> dict[str, Any] | None:
    """Where a portal comment on lines of the diff goes as a PR review comment (commit, path, line,
    side; a range's start), or None for any other message."""
    if meta.get("kind") != "review_comment" or meta.get("side") not in ("old", "new"):
        return None
    path, line, sha = meta.get("path"), meta.get("line"), meta.get("head_sha")
    if not (isinstance(path, str) and isinstance(line, int) and isinstance(sha, str) and sha):
        return None
    side = "LEFT" if meta["side"] == "old" else "RIGHT"
    position: dict[str, Any] = {"commit_id": sha, "path": path, "line": line, "side": side}
    start = meta.get("start_line")
    if isinstance(start, int) and start < line:
        position.update(start_line=start, start_side=side)
    return position


class GitHubHost:
    """The code-host port on GitHub (see osiris/app/ports.py)."""

    name = "github"

    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], *, gh: GitHub | None = None
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.gh = gh or GitHub(settings)
        self._contents: OrderedDict[tuple[str, str, str], str | None] = OrderedDict()
        self._base_files: dict[tuple[str, str, str], tuple[float, str | None]] = {}
        # The base branch's head a task's first patch was checked against, for its publish: the
        # commit the patch is known to apply to, and one GET of the branch fewer (issue 17).
        self._checked_base: OrderedDict[tuple[int, str, str], tuple[float, Head]] = OrderedDict()
        self.checkouts = CheckoutCache(
            settings.data_dir / "cache" / "github",
            settings.checks.github_clone_url,
            timeout=settings.checks.github_fetch_timeout_seconds,
        )

    async def aclose(self) -> None:
        await self.gh.aclose()

    # --- where things are -----------------------------------------------------------------------

    async def repo_for(self, task: Task) -> str:
        """The GitHub repository of a task: OSIRIS_GITHUB_REPO names it, else the repository its
        organization registered (`repositories.github_repo`), else OSIRIS_GITHUB_REPO's "*"."""
        mapping = self.settings.github.repo
        full = mapping.get(task.repo)
        if not full:
            async with self.sessions() as session:
                full = await session.scalar(
                    select(Repository.github_repo).where(
                        Repository.name == task.repo, Repository.org_id == task.org_id
                    )
                )
        full = full or mapping.get("*")
        if not full or full.count("/") != 1:
            raise InvalidInput(
                f"repository {task.repo!r} is not mapped to a GitHub repository "
                "(OSIRIS_GITHUB_REPO, or the repository's github_repo)"
            )
        return full

    async def clone_url(self, task: Task) -> str:
        return self.settings.checks.github_clone_url.format(repo=await self.repo_for(task))

    async def osiris_repos(self, full_name: str) -> set[str] | None:
        """The OSIRIS repo names served by a GitHub repository; None means any ("*")."""
        names = {k for k, v in self.settings.github.repo.items() if v.lower() == full_name.lower()}
        if "*" in names:
            return None
        async with self.sessions() as session:
            registered = await session.scalars(
                select(Repository.name).where(func.lower(Repository.github_repo) == full_name.lower())
            )
            return names | set(registered)

    async def _branch_head(self, repo: str, branch: str) -> Head | None:
        try:
            found = await self.gh.get(repo_path(repo, "branches", branch))
        except BadRequest as exc:
            if _status(exc) == 404:
                return None
            raise
        commit = found["commit"]
        return Head(commit["sha"], commit["commit"]["tree"]["sha"], commit["commit"]["message"])

    async def _base_head(self, repo: str, branch: str, paths: Sequence[str] = ()) -> Head | None:
        """The base branch's head, read with what is known to be asked next: the touched files at
        that very commit (a patch's check) and `.osiris.yml` (the pre-review checks). One GraphQL
        query instead of a GET of the branch and one per file (issue 17). A file GraphQL cannot give
        as text (binary, too large, a directory) is left to `_read`, which says why it cannot be used."""
        # An agent's patch names its paths: a bounded number rides along (the rest `_read` reads).
        config = [REPO_CONFIG] if self.settings.checks.read_repo_config else []
        wanted = list(dict.fromkeys([*paths[:_BASE_QUERY_FILES], *config]))
        owner, name = repo.split("/")
        fields = " ".join(f"f{i}: file(path: $p{i}) {{ {_FILE_FIELDS} }}" for i in range(len(wanted)))
        params = "".join(f", $p{i}: String!" for i in range(len(wanted)))
        query = (
            f"query($owner: String!, $name: String!, $ref: String!{params}) {{"
            " repository(owner: $owner, name: $name) { ref(qualifiedName: $ref) { target {"
            f" ... on Commit {{ oid message tree {{ oid }} {fields} }} }} }} }} }}"
        )
        found, errors = await self.gh.graphql_fields(
            query,
            owner=owner,
            name=name,
            ref=f"refs/heads/{branch}",
            **{f"p{i}": p for i, p in enumerate(wanted)},
        )
        if any(e.get("type") != "NOT_FOUND" for e in errors):  # NOT_FOUND: as REST's 404, no branch
            raise GraphQLException("; ".join(str(e.get("message")) for e in errors), {"errors": errors})
        commit = ((found.get("repository") or {}).get("ref") or {}).get("target")
        if not commit:
            return None
        head = Head(commit["oid"], commit["tree"]["oid"], commit.get("message") or "")
        texts: dict[str, str | None] = {}
        for i, path in enumerate(wanted):
            entry = commit.get(f"f{i}")
            blob = (entry or {}).get("object") or {}
            if entry is None:
                texts[path] = None  # not in that commit
            elif _whole_text(entry, blob):
                texts[path] = blob["text"]
        self._cache_contents(((repo, head.sha, p), t) for p, t in texts.items())
        if REPO_CONFIG in texts:
            self._base_files[(repo, branch, REPO_CONFIG)] = (
                time.monotonic() + BASE_FILE_TTL_SECONDS,
                texts[REPO_CONFIG],
            )
        return head

    async def _read(self, repo: str, ref: str, paths: Sequence[str]) -> dict[str, str | None]:
        """The touched files at `ref` (None when absent); immutable refs (shas) are cached."""
        out: dict[str, str | None] = {}
        for path in paths:
            key = (repo, ref, path)
            if key in self._contents:
                out[path] = self._contents[key]
                continue
            try:
                item = await self.gh.get(repo_path(repo, "contents", path), ref=ref)
            except BadRequest as exc:
                if _status(exc) != 404:
                    raise
                item = None
            out[path] = _decode(path, item) if item is not None else None
            if re.fullmatch(r"[0-9a-f]{40}", ref):
                self._cache_contents([(key, out[path])])
        return out

    def _remember_base(self, task: Task, repo: str, head: Head) -> None:
        self._checked_base[(task.id, repo, task.base_branch)] = (
            time.monotonic() + CHECKED_BASE_TTL_SECONDS,
            head,
        )
        while len(self._checked_base) > 256:
            self._checked_base.popitem(last=False)

    def _checked_base_head(self, task: Task, repo: str) -> Head | None:
        """The base head the task's first version was checked against moments ago (this process),
        taken once; None when there is none or it is older than CHECKED_BASE_TTL_SECONDS."""
        hit = self._checked_base.pop((task.id, repo, task.base_branch), None)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    # --- check ----------------------------------------------------------------------------------

    async def check(self, task: Task, artifact: ValidArtifact) -> None:
        if artifact.kind is not ArtifactKind.PATCH:
            return  # files and text always apply
        repo = await self.repo_for(task)
        try:
            async with self.sessions() as session:
                history = await _history(session, task.id)
            parent = next((a.commit_sha for a in reversed(history) if a.commit_sha), None)
            later = parent is not None
            if parent is None:
                head = await self._base_head(repo, task.base_branch, github_patch.sources(artifact.content))
                if head is None:
                    raise InvalidInput(f"base branch {task.base_branch!r} does not exist on {repo}")
                parent = head.sha
                self._remember_base(task, repo, head)
            await self._patch_onto(task, repo, parent, artifact.content, later=later)
        except GitHubUnavailable as exc:
            raise Unavailable(f"GitHub is unavailable: {exc}") from None

    async def _patch_onto(
        self, task: Task, repo: str, parent: str, patch: str, *, later: bool = True
    ) -> tuple[Head | None, list[github_patch.Change]]:
        """A patch's changes and what they are a diff against: None for `parent` (the task branch
        head), else the commit the branch starts from (a cumulative diff against the base), read
        as the local host reads them (`trees.build_version_tree`). `later=False`: a first version,
        whose `parent` is the base branch head, has one reading."""
        try:
            originals = await self._read(repo, parent, github_patch.sources(patch))
            return None, github_patch.apply_patch(patch, originals)
        except PatchDoesNotApply as exc:
            on_branch = exc
        start = await self._start_of(task, repo, parent) if later else None
        if start is None:
            raise on_branch
        try:
            originals = await self._read(repo, start.sha, github_patch.sources(patch))
            return start, github_patch.apply_patch(patch, originals)
        except PatchDoesNotApply as on_start:
            name = branch_name(task.id)
            raise PatchDoesNotApply.on_neither(
                f"{name} at {parent[:12]}",
                on_branch,
                f"{task.base_branch} at {start.sha[:12]} (where {name} starts)",
                on_start,
            ) from None

    async def _start_of(self, task: Task, repo: str, head: str) -> Head | None:
        """Where the task branch at `head` leaves the base branch (their merge base: the left side
        of the pull request's files changed); None when that is `head` itself."""
        try:
            compared = await self.gh.get(repo_path(repo, "compare", f"{task.base_branch}...{head}"))
        except BadRequest as exc:
            if _status(exc) == 404:
                return None
            raise
        found = compared.get("merge_base_commit") or {}
        sha, tree = found.get("sha"), ((found.get("commit") or {}).get("tree") or {}).get("sha")
        return Head(sha, tree) if sha and tree and sha != head else None

    # --- publish --------------------------------------------------------------------------------

    async def publish(self, task: Task, artifact: Artifact) -> dict[str, Any]:
        repo = await self.repo_for(task)
        branch = branch_name(task.id)
        calls_before = self.gh.calls
        async with self.sessions() as session:
            history = await _history(session, task.id)
            state = await _published_state(session, task.id)
        earlier = [a for a in history if a.version < artifact.version]
        later = [a for a in history if a.version > artifact.version and a.commit_sha]
        if later:  # a newer version is already on the branch: this one must not land on top of it
            return {"branch": branch, "created": False, "superseded_by": later[-1].version}

        commit, tree, branch_created = await self._commit(task, artifact, repo, branch, earlier, state)
        pr, pr_created = await self._pull_request(
            task, artifact, repo, branch, earlier, state, branch_created
        )
        number = pr["number"]
        versions = [a for a in history if a.version <= artifact.version]
        body = self._pr_body(task, repo, versions, {artifact.id: commit})
        text = None
        if artifact.version > 1:
            text = f"OSIRIS: version {artifact.version} pushed as {commit[:12]}."
            if artifact.summary:
                text += f"\n\n{artifact.summary}"
        if not pr_created:
            await self._update_pr(task, repo, pr, body, text and (f"version:{artifact.id}", text))
        elif text is not None:
            await self._comment_once(task, repo, number, f"version:{artifact.id}", text)
        return {
            "branch": branch,
            "commit_sha": commit,
            "pr_number": number,
            "pr_url": pr.get("html_url"),
            "pr_node_id": pr.get("node_id"),
            "tree_sha": tree,
            "created": branch_created or pr_created,
            "github_calls": self.gh.calls - calls_before,
        }

    # Each branch below is a state a crashed or raced earlier attempt can leave on GitHub; read in order,
    # they are the retry's whole story.
    async def _commit(  # noqa: C901 - one idempotent step over every state GitHub can be in
        self,
        task: Task,
        artifact: Artifact,
        repo: str,
        branch: str,
        earlier: list[Artifact],
        state: dict[int, dict[str, Any]],
    ) -> tuple[str, str, bool]:
        """Put the version's commit at the branch head: (commit sha, tree sha, branch created?)."""
        prev = earlier[-1] if earlier else None
        known = state.get(prev.id, {}) if prev is not None else {}
        if prev is not None and prev.commit_sha and known.get("tree_sha"):
            # The previous version's commit and tree are on record: no need to ask GitHub.
            parent: Head | None = Head(prev.commit_sha, known["tree_sha"])
            exists = True
        elif prev is not None:
            parent = await self._branch_head(repo, branch)
            exists = parent is not None
            if parent is not None and trailer_artifact(parent.message) == artifact.id:
                return parent.sha, parent.tree, False
        else:
            parent, exists = None, False
        if parent is None:
            parent = self._checked_base_head(task, repo) or await self._base_head(repo, task.base_branch)
            if parent is None:
                raise InvalidInput(f"base branch {task.base_branch!r} does not exist on {repo}")

        sha, tree = await self._make_commit(task, artifact, repo, parent)
        if not exists:
            try:
                await self.gh.post(
                    repo_path(repo, "git", "refs"), {"ref": f"refs/heads/{branch}", "sha": sha}
                )
                return sha, tree, True
            except BadRequest as exc:
                if _status(exc) != 422:
                    raise
            # The branch is there already: an earlier attempt of ours, or a leftover of the same name.
            ref = await self.gh.get(repo_path(repo, "git", "ref", f"heads/{branch}"))
            current = ref["object"]["sha"]
            if current == sha:
                return sha, tree, False
            found = await self.gh.get(repo_path(repo, "git", "commits", current))
            if trailer_artifact(found.get("message")) == artifact.id:
                return current, found["tree"]["sha"], False
            if prev is None:  # a stale branch from before this task had a version: ours by name
                await self._move_ref(repo, branch, sha, force=True)
                return sha, tree, False
            parent = Head(current, found["tree"]["sha"], found.get("message", ""))
            sha, tree = await self._make_commit(task, artifact, repo, parent)
        try:
            await self._move_ref(repo, branch, sha, force=False)
            return sha, tree, False
        except BadRequest as exc:
            if _status(exc) != 422:
                raise
        # Not a fast-forward: someone pushed to the branch. Build on what is there now.
        head = await self._branch_head(repo, branch)
        if head is None:
            raise Retry(self.settings.github.retry_seconds, f"branch {branch} vanished while publishing")
        if trailer_artifact(head.message) == artifact.id:
            return head.sha, head.tree, False
        sha, tree = await self._make_commit(task, artifact, repo, head)
        await self._move_ref(repo, branch, sha, force=False)
        return sha, tree, False

    async def _move_ref(self, repo: str, branch: str, sha: str, *, force: bool) -> None:
        await self.gh.patch(repo_path(repo, "git", "refs", f"heads/{branch}"), {"sha": sha, "force": force})

    async def _make_commit(self, task: Task, artifact: Artifact, repo: str, parent: Head) -> tuple[str, str]:
        entries = []
        onto, changes = await self._changes(task, artifact, repo, parent.sha)
        for change in changes:
            entry: dict[str, Any] = {"path": change.path, "mode": change.mode, "type": "blob"}
            if change.content is None:
                entry["sha"] = None  # deletes the path
            else:
                entry["content"] = change.content
            entries.append(entry)
        # A cumulative diff against the base makes the tree the branch's start plus the patch, still
        # committed on top of the branch head: the pull request's files changed are the patch.
        tree = await self.gh.post(
            repo_path(repo, "git", "trees"), {"base_tree": (onto or parent).tree, "tree": entries}
        )
        # Fixed dates make the commit a pure function of its inputs: a retry recreates the same sha.
        when = artifact.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        who = {"name": "OSIRIS", "email": "osiris@users.noreply.github.com", "date": when}
        commit = await self.gh.post(
            repo_path(repo, "git", "commits"),
            {
                "message": self._commit_message(task, artifact),
                "tree": tree["sha"],
                "parents": [parent.sha],
                "author": who,
                "committer": who,
            },
        )
        # What the touched files hold in the new commit is known: we wrote it. The next version's
        # patch applies to it without reading it back (one GET per file and version fewer).
        self._cache_contents(
            ((repo, commit["sha"], c.path), c.content)
            for c in changes
            if c.mode in (github_patch.REGULAR, github_patch.EXECUTABLE)  # what `_read` would decode
        )
        return commit["sha"], tree["sha"]

    def _cache_contents(self, items: Iterable[tuple[tuple[str, str, str], str | None]]) -> None:
        for key, content in items:
            self._contents[key] = content
        while len(self._contents) > 256:
            self._contents.popitem(last=False)

    async def _changes(
        self, task: Task, artifact: Artifact, repo: str, parent_sha: str
    ) -> tuple[Head | None, list[github_patch.Change]]:
        if artifact.kind == ArtifactKind.FILES.value:
            import json

            files: dict[str, str] = json.loads(artifact.content)
            return None, [github_patch.Change(path, body) for path, body in sorted(files.items())]
        if artifact.kind == ArtifactKind.TEXT.value:
            path = self.settings.github.text_path.format(id=task.id)
            return None, [github_patch.Change(path, artifact.content)]
        return await self._patch_onto(task, repo, parent_sha, artifact.content)

    @staticmethod
    def _commit_message(task: Task, artifact: Artifact) -> str:
        lines = [f"{task.title} (OSIRIS task #{task.id}, version {artifact.version})"]
        if artifact.summary:
            lines += ["", artifact.summary.strip()]
        lines += ["", f"Osiris-Task: {task.id}", f"{TRAILER}: {artifact.id}"]
        return "\n".join(lines) + "\n"

    async def _pull_request(
        self,
        task: Task,
        artifact: Artifact,
        repo: str,
        branch: str,
        earlier: list[Artifact],
        state: dict[int, dict[str, Any]],
        branch_created: bool,
    ) -> tuple[dict[str, Any], bool]:
        known = next((a for a in reversed(earlier) if a.pr_number), None)
        if known is not None:
            node = state.get(known.id, {}).get("pr_node_id")
            return {"number": known.pr_number, "html_url": known.pr_url, "node_id": node}, False
        if not branch_created:  # a branch we did not just create may already have its PR
            found = await self._find_pr(repo, branch)
            if found is not None:
                await self._ensure_label(repo, found)
                return found, False
        body = self._pr_body(task, repo, [*earlier, artifact], {})
        try:
            pr = await self.gh.post(
                repo_path(repo, "pulls"),
                {"title": task.title, "head": branch, "base": task.base_branch, "body": body, "draft": True},
            )
        except BadRequest as exc:
            found = await self._find_pr(repo, branch) if _status(exc) == 422 else None
            if found is None:
                raise
            await self._ensure_label(repo, found)
            return found, False
        await self.gh.post(
            repo_path(repo, "issues", str(pr["number"]), "labels"), {"labels": [self.settings.github.label]}
        )
        return pr, True

    async def _find_pr(self, repo: str, branch: str) -> dict[str, Any] | None:
        owner = repo.split("/")[0]
        found = await self.gh.get(repo_path(repo, "pulls"), head=f"{owner}:{branch}", state="open")
        return found[0] if found else None

    async def _ensure_label(self, repo: str, pr: dict[str, Any]) -> None:
        if any(label.get("name") == self.settings.github.label for label in pr.get("labels", [])):
            return
        await self.gh.post(
            repo_path(repo, "issues", str(pr["number"]), "labels"), {"labels": [self.settings.github.label]}
        )

    def _pr_body(
        self, task: Task, repo: str, versions: Sequence[Artifact], new_commits: dict[int, str]
    ) -> str:
        url = f"{self.settings.server.public_url.rstrip('/')}/tasks/{task.id}"
        latest = versions[-1] if versions else None
        rows = []
        for a in versions:
            sha = new_commits.get(a.id) or a.commit_sha
            first = (a.summary or "").strip().splitlines()[0] if (a.summary or "").strip() else ""
            rows.append(
                f"| {a.version} | {f'`{sha[:12]}`' if sha else '…'} | "
                f"{a.created_at:%Y-%m-%d %H:%M} UTC | {_cell(first)} |"
            )
        parts = [
            marker(f"task:{task.id}"),
            f"**[OSIRIS task #{task.id}]({url})**: {task.title}",
            "",
            *self._closes(task, repo),
            f"- Requester: {task.requester or 'unknown'}",
            f"- Channel: {task.channel}",
            "- Opened as a draft by OSIRIS. Approve it here or in the portal to merge; "
            "request changes to send it back to the agent.",
            "",
            f"### Summary (version {latest.version if latest else 1})",
            (latest.summary or "").strip() if latest and latest.summary else "_The agent gave no summary._",
            "",
            "### Versions",
            "| version | commit | submitted | summary |",
            "|---|---|---|---|",
            *rows,
        ]
        return "\n".join(parts)

    def _closes(self, task: Task, repo: str) -> list[str]:
        """A task asked for in an issue of this very repository: merging the PR closes the issue."""
        issue_repo, _, number = (task.channel_thread or "").rpartition("#")
        if task.channel != "github" or not number.isdigit() or issue_repo.lower() != repo.lower():
            return []
        return [f"Closes #{number}", ""]

    async def _update_pr(
        self, task: Task, repo: str, pr: dict[str, Any], body: str, comment: tuple[str, str] | None
    ) -> None:
        """The PR's new body and, for a later version, its comment: one GraphQL document the first
        time (issue 17). A retry, or a PR whose node id is not on record, takes the REST way, where
        the comment's marker is looked for before posting again."""
        number, node = int(pr["number"]), pr.get("node_id")
        if comment is None or node is None or not await self._intend(task, comment[0]):
            await self.gh.patch(repo_path(repo, "pulls", str(number)), {"body": body})
            if comment is not None:
                await self._comment_once(task, repo, number, *comment)
            return
        key, text = comment
        data, errors = await self.gh.graphql_fields(
            VERSION_MUTATION, id=node, body=body, comment=f"{text}\n\n{marker(key)}"
        )
        if data.get("body") is None:
            await self.gh.patch(repo_path(repo, "pulls", str(number)), {"body": body})
        if data.get("comment") is None:  # the intent is recorded: the marker is looked for first
            await self._comment_once(task, repo, number, key, text)

    # --- comments -------------------------------------------------------------------------------

    async def _intend(self, task: Task, key: str) -> bool:
        """Record the intent to post the comment of this key; False when an earlier attempt did."""
        async with self.sessions() as session, session.begin():
            tried = await session.scalar(
                select(TaskEvent.id).where(
                    TaskEvent.task_id == task.id,
                    TaskEvent.kind == INTENT_EVENT,
                    TaskEvent.data["key"].astext == key,
                )
            )
            if tried is None:
                locked = await session.get(Task, task.id)
                assert locked is not None  # noqa: S101
                await record_event(
                    session, locked, system_actor(task.org_id, "github"), INTENT_EVENT, data={"key": key}
                )
        return tried is None

    async def _comment_once(
        self,
        task: Task,
        repo: str,
        number: int,
        key: str,
        text: str,
        *,
        on_line: dict[str, Any] | None = None,
    ) -> int:
        """Post a comment at most once per key, even when a timed-out POST did reach GitHub.
        `on_line` (commit_id, path, line, side, …) makes it a PR review comment on that line."""
        tag = marker(key)
        where = ("pulls", str(number), "comments") if on_line else ("issues", str(number), "comments")
        if not await self._intend(task, key):  # an earlier attempt may have posted it before failing
            comments = await self.gh.get_all(repo_path(repo, *where), per_page=100)
            for c in comments:
                if tag in (c.get("body") or ""):
                    return int(c["id"])
        posted = await self.gh.post(repo_path(repo, *where), {"body": f"{text}\n\n{tag}", **(on_line or {})})
        return int(posted["id"])

    async def comment(self, task: Task, message: Message) -> dict[str, Any]:
        if message.source.startswith("github"):
            return {"skipped": "came from GitHub"}
        repo = await self.repo_for(task)
        async with self.sessions() as session:
            pr = await _latest_pr(session, task.id)
        if pr is None:
            if task.artifact_count > 0:  # its PR is being opened right now: mirror it once it exists
                raise Retry(self.settings.github.retry_seconds, "the pull request is not open yet")
            return {"skipped": "no pull request"}
        who = "the agent" if message.direction == "from_agent" else "OSIRIS"
        text = f"**{message.author_name}** ({who}, via OSIRIS):\n\n{message.body}"
        number, key = pr.pr_number or 0, f"message:{message.id}"
        on_line = _review_comment_position(message.meta or {})
        mirrored: dict[str, Any] = {}
        if on_line is not None:
            try:
                comment_id = await self._comment_once(task, repo, number, key, text, on_line=on_line)
                mirrored = {"review_comment": True, "path": on_line["path"], "line": on_line["line"]}
            except BadRequest as exc:
                if _status(exc) != 422:  # GitHub refuses the position (an outdated commit): say where
                    raise
                on_line = None
                where = f"`{(message.meta or {}).get('path')}` line {(message.meta or {}).get('line')}"
                text = f"{text}\n\n_(on {where}, which GitHub would not take as a review comment)_"
                key = f"{key}:fallback"
        if on_line is None:
            comment_id = await self._comment_once(task, repo, number, key, text)
        async with self.sessions() as session, session.begin():
            # Remembered so the comment's webhook echo is recognised as ours.
            await session.execute(
                update(Message)
                .where(Message.id == message.id, Message.provider_id.is_(None))
                .values(provider_id=str(comment_id))
            )
        return {"pr_number": pr.pr_number, "comment_id": comment_id, **mirrored}

    # --- review requests (ports.ReviewRequester) ----------------------------------------------------

    async def request_review(self, task: Task, logins: list[str]) -> dict[str, Any]:
        """Ask these logins to review the task's pull request (GitHub's requested reviewers), keeping
        only those mapped to an active reviewer or admin of the task's organization who is neither its
        requester nor its agent. GitHub does not notify a login that is already requested, so each
        request (one per reminder interval) first removes theirs (a no-op for a login not requested)
        and then asks again: everyone is notified anew. GitHub refuses the whole request (422) when
        one login is not a collaborator: each login is then asked alone, and the refused ones are
        returned, not raised. Rate limits and outages raise `jobs.Retry` (the client), so the job
        runs again after GitHub's Retry-After; the removal is repeated then, harmlessly."""
        async with self.sessions() as session:
            pr = await _latest_pr(session, task.id)
            wanted = await _reviewer_logins(session, task, logins)
        if pr is None or pr.pr_number is None:
            return {"skipped": "no pull request"}
        if not wanted:
            return {"skipped": "no reviewer with a GitHub login"}
        url = repo_path(await self.repo_for(task), "pulls", str(pr.pr_number), "requested_reviewers")
        await self._withdraw_requests(url, wanted)
        if await self._ask_reviewers(url, wanted):
            requested, refused = wanted, []
        else:  # one of them at least is refused: ask each alone, so the others are still asked
            alone = {login: await self._ask_reviewers(url, [login]) for login in wanted if len(wanted) > 1}
            requested = [login for login in wanted if alone.get(login)]
            refused = [login for login in wanted if not alone.get(login)]
        return {"pr_number": pr.pr_number, "ok": bool(requested), "requested": requested, "refused": refused}

    async def _withdraw_requests(self, url: str, logins: list[str]) -> None:
        """Remove these logins' pending review requests, so that asking again notifies them. A
        refusal (422) is left to the request that follows, which says who GitHub refuses."""
        try:  # gidgethub's DELETE with a body (the client's `delete` sends none)
            await self.gh.api.delete(url, data={"reviewers": logins}, oauth_token=await self.gh.token())
        except BadRequest as exc:
            if _status(exc) != 422:
                raise

    async def _ask_reviewers(self, url: str, logins: list[str]) -> bool:
        """False when GitHub refuses them (422: not a collaborator, or the pull request's author)."""
        try:
            await self.gh.post(url, {"reviewers": logins})
        except BadRequest as exc:
            if _status(exc) != 422:
                raise
            return False
        return True

    # --- merge and close ------------------------------------------------------------------------

    async def merge(self, task: Task, *, head_sha: str | None = None) -> dict[str, Any]:
        repo = await self.repo_for(task)
        branch = branch_name(task.id)
        async with self.sessions() as session:
            pr = await _latest_pr(session, task.id)
            state = await _published_state(session, task.id)
        if pr is None or pr.pr_number is None:
            raise MergeConflict("there is no pull request to merge")
        number = pr.pr_number
        sha = head_sha or pr.commit_sha
        node = next((d["pr_node_id"] for d in reversed(list(state.values())) if d.get("pr_node_id")), None)
        if node is None:
            node = (await self.gh.get(repo_path(repo, "pulls", str(number))))["node_id"]
        data, errors = await self.gh.graphql_fields(
            MERGE_MUTATION,
            id=node,
            head=sha,
            method=self.settings.github.merge_method.upper(),
            title=f"{task.title} (#{number})",
        )
        done = (data.get("merge") or {}).get("pullRequest") or {}
        if done.get("merged"):
            return await self._merged(
                repo, branch, number, (done.get("mergeCommit") or {}).get("oid"), already=False
            )
        # Not merged. GitHub says why in the errors; the pull request itself says what to do next.
        why = "; ".join(str(e.get("message")) for e in errors) or "GitHub did not merge it"
        current = await self.gh.get(repo_path(repo, "pulls", str(number)))
        if current.get("merged"):  # merged already (by a person, or by our own timed-out attempt)
            return await self._merged(repo, branch, number, current.get("merge_commit_sha"), already=True)
        refused = any(e.get("type") in ("FORBIDDEN", "NOT_FOUND") for e in errors)
        if current.get("draft") or refused:  # not marked ready (closed) or not allowed: no conflict
            raise GraphQLException(why, {"errors": errors})
        if current["head"]["sha"] != sha or "Head branch was modified" in why:
            raise MergeConflict(f"the branch {branch} moved since version {pr.version} was approved ({why})")
        files = await self._conflicting_files(repo, task.base_branch, branch)
        raise MergeConflict(f"pull request #{number} cannot be merged: {why}", files=files)

    async def _merged(
        self, repo: str, branch: str, number: int, sha: str | None, *, already: bool
    ) -> dict[str, Any]:
        deleted = False
        if self.settings.repos.delete_branch_on_merge:
            try:
                await self.gh.delete(repo_path(repo, "git", "refs", f"heads/{branch}"))
                deleted = True
            except BadRequest as exc:
                if _status(exc) not in (404, 422):  # 422: already gone
                    raise
        return {
            "pr_number": number,
            "merged": True,
            "merge_sha": sha,
            "already": already,
            "branch_deleted": deleted,
        }

    # --- what a merge would bring in (ports.CodeHost.changes) -----------------------------------

    async def changes(self, task: Task, *, head_sha: str, paths: list[str] | None = None) -> dict[str, Any]:
        """The pull request's files (paginated; GitHub lists at most 3000) while its head is this
        commit; once someone moved the head elsewhere, the compare API from the base to this commit."""
        repo = await self.repo_for(task)
        async with self.sessions() as session:
            pr = await _latest_pr(session, task.id)
        if pr is None or pr.pr_number is None:
            raise NotFound(f"task {task.id} has no pull request yet")
        number = str(pr.pr_number)
        current = await self.gh.get(repo_path(repo, "pulls", number))
        state = "merged" if current.get("merged") else current.get("state") or "open"
        if state == "open" and current.get("draft"):
            state = "draft"
        head_moved = current["head"]["sha"] != head_sha
        merge_base: str | None = None
        if head_moved:
            compared = await self.gh.get(repo_path(repo, "compare", f"{current['base']['sha']}...{head_sha}"))
            entries = compared.get("files") or []
            merge_base = (compared.get("merge_base_commit") or {}).get("sha")
        else:
            entries = await self.gh.get_all(repo_path(repo, "pulls", number, "files"), per_page=100)
        mergeable = current.get("mergeable") if state in ("open", "draft") else None
        conflicts: list[str] = []
        if mergeable is False:
            conflicts = await self._conflicting_files(repo, task.base_branch, branch_name(task.id))
        files = [
            _file_change(e)
            for e in entries
            if not paths or {e.get("filename"), e.get("previous_filename")} & set(paths)
        ]
        return {
            "state": state,
            "base_sha": current["base"]["sha"],
            "merge_base_sha": merge_base,
            "mergeable": mergeable,
            "mergeable_state": current.get("mergeable_state"),
            "conflicts": conflicts,
            "head_moved": head_moved,
            "truncated": False,
            "files": files,
        }

    async def _conflicting_files(self, repo: str, base: str, branch: str) -> list[str]:
        """Paths changed both on the branch and on the base since they diverged."""
        ours = await self.gh.get(repo_path(repo, "compare", f"{base}...{branch}"))
        theirs = await self.gh.get(repo_path(repo, "compare", f"{branch}...{base}"))
        changed = {f["filename"] for f in theirs.get("files", [])}
        return sorted(f["filename"] for f in ours.get("files", []) if f["filename"] in changed)

    async def close(self, task: Task) -> dict[str, Any]:
        repo = await self.repo_for(task)
        async with self.sessions() as session:
            pr = await _latest_pr(session, task.id)
        if pr is None or pr.pr_number is None:
            return {"skipped": "no pull request"}
        found = await self.gh.patch(repo_path(repo, "pulls", str(pr.pr_number)), {"state": "closed"})
        return {"pr_number": pr.pr_number, "state": found.get("state")}

    # --- pre-review checks (ports.RemoteCheckoutSource, ports.CheckReporter) ------------------------

    async def checks_file(self, task: Task, path: str) -> str | None:
        """`.osiris.yml` on the base branch, through the contents API; kept for a short while, since
        every publish asks and it rarely changes."""
        repo = await self.repo_for(task)
        key = (repo, task.base_branch, path)
        hit = self._base_files.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        try:
            found = (await self._read(repo, task.base_branch, [path]))[path]
        except PatchDoesNotApply:  # a directory or a binary file of that name: not a configuration
            found = None
        self._base_files[key] = (time.monotonic() + BASE_FILE_TTL_SECONDS, found)
        return found

    async def checkout(self, task: Task, sha: str) -> AbstractContextManager[Path]:
        token = await self.gh.token()  # an App's installation token is renewed here if need be
        return self.checkouts.worktree(await self.repo_for(task), branch_name(task.id), sha, token)

    async def report_checks(
        self, task: Task, run: Any, *, commands: list[str], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        repo = await self.repo_for(task)
        url = f"{self.settings.server.public_url.rstrip('/')}/tasks/{task.id}"
        if self.settings.github.app_id is not None:  # check runs are for GitHub Apps only
            body = check_reports.check_run_body(run, commands, url)
            known = (previous or {}).get("github_check_run_id")
            if known is not None and body["status"] == "completed":
                body.pop("head_sha")
                found = await self.gh.patch(repo_path(repo, "check-runs", str(known)), body)
            else:
                found = await self.gh.post(repo_path(repo, "check-runs"), body)
            return {
                "kind": "check_run",
                "github_check_run_id": found["id"],
                "conclusion": found.get("conclusion"),
            }
        states = {}
        for context, body in check_reports.statuses(run, commands, url):
            await self.gh.post(repo_path(repo, "statuses", run.commit_sha), body)
            states[context] = body["state"]
        return {"kind": "status", "statuses": states}


# --- small queries -----------------------------------------------------------------------------


async def _history(session: AsyncSession, task_id: int) -> list[Artifact]:
    stmt = select(Artifact).where(Artifact.task_id == task_id).order_by(Artifact.version)
    return list((await session.execute(stmt)).scalars().all())


async def _latest_pr(session: AsyncSession, task_id: int) -> Artifact | None:
    stmt = (
        select(Artifact)
        .where(Artifact.task_id == task_id, Artifact.pr_number.is_not(None))
        .order_by(Artifact.version.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def _reviewer_logins(session: AsyncSession, task: Task, logins: Iterable[str]) -> list[str]:
    """Of `logins`, those of the task organization's active reviewers and admins, never the person who
    filed it (their account, or `github:<login>` for an issue), its holder or an author of a version."""
    wanted = {login.lower() for login in logins if login}
    requester = (task.requester or "").lower().lstrip("@").removeprefix("github:")
    authors = select(Artifact.author_id).where(Artifact.task_id == task.id, Artifact.author_id.is_not(None))
    others = [i for i in (task.created_by_id, task.assignee_id) if i is not None]
    found = await session.scalars(
        select(User.github_login)
        .where(
            User.org_id == task.org_id,
            User.is_active.is_(True),
            User.role.in_([Role.REVIEWER.value, Role.ADMIN.value]),
            func.lower(User.github_login).in_(wanted - {requester}),
            func.lower(User.username) != requester,
            User.id.not_in(others),
            User.id.not_in(authors),
        )
        .order_by(User.github_login)
    )
    return [login for login in found if login]


async def _published_state(session: AsyncSession, task_id: int) -> dict[int, dict[str, Any]]:
    """What earlier publishes recorded (tree sha, PR node id), by artifact id: saves API calls."""
    stmt = (
        select(TaskEvent.data)
        .where(TaskEvent.task_id == task_id, TaskEvent.kind == "published")
        .order_by(TaskEvent.id)
    )
    out: dict[int, dict[str, Any]] = {}
    for data in (await session.execute(stmt)).scalars():
        if isinstance(data, dict) and data.get("artifact_id"):
            out[int(data["artifact_id"])] = data
    return out


_FILE_FIELDS = "type object { ... on Blob { text isBinary isTruncated byteSize } }"
_BASE_QUERY_FILES = 50  # files read with the base head in one GraphQL query, at most


def _whole_text(entry: dict[str, Any], blob: dict[str, Any]) -> bool:
    """A regular file GraphQL gave whole, as the very bytes (GitHub re-encodes some non-UTF-8 text)."""
    text = blob.get("text")
    if (
        entry.get("type") != "blob"
        or not isinstance(text, str)
        or blob.get("isBinary")
        or blob.get("isTruncated")
    ):
        return False
    return len(text.encode()) == blob.get("byteSize")


def _decode(path: str, item: Any) -> str:
    if not isinstance(item, dict) or item.get("type") != "file":
        raise PatchDoesNotApply(f"{path}: is not a regular file")
    if item.get("encoding") != "base64" or item.get("content") is None:
        raise PatchDoesNotApply(f"{path}: too large to patch through the GitHub API")
    raw = base64.b64decode(item["content"])
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise PatchDoesNotApply(f"{path}: is not a text file") from None


_GITHUB_STATUS = {"removed": "deleted", "renamed": "renamed", "copied": "copied", "added": "added"}


def _file_change(entry: dict[str, Any]) -> dict[str, Any]:
    """One entry of the PR files (or compare) API as a `FileChange`. GitHub leaves `patch`
    out for a binary file (no line counted) and for one too large to show."""
    patch = entry.get("patch")
    status = _GITHUB_STATUS.get(entry.get("status", ""), "modified")
    binary = patch is None and not entry.get("changes") and status != "renamed"
    return {
        "path": entry["filename"],
        "old_path": entry.get("previous_filename") if status in ("renamed", "copied") else None,
        "status": status,
        "binary": binary,
        "additions": int(entry.get("additions") or 0),
        "deletions": int(entry.get("deletions") or 0),
        "too_large": patch is None and not binary and bool(entry.get("changes")),
        "hunks": [h.model_dump() for h in diffs.hunks_of(patch)] if patch else [],
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|")[:120]


def install_github_host(runtime: Any) -> GitHubHost:
    """For extension.services(): GitHub is configured, so it is the code host the jobs use."""
    host = GitHubHost(runtime.settings, runtime.sessions)
    runtime.services.code_host = host
    return host
