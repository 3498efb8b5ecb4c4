"""Artifact → git tree, without a checkout and without reading the whole tree.

Only the touched paths are loaded into a private index (for a patch) or hashed (for files and
text); the new root tree is then spliced together by rewriting just the directories on those paths,
`git ls-tree` in and `git mktree` out. The cost follows the number of touched paths and the width of
their directories, not the number of files in the repository.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from unidiff import PatchSet

from osiris.app.artifacts import ValidArtifact, check_path
from osiris.app.errors import PatchDoesNotApply
from osiris.app.models import ArtifactKind
from osiris.github_bridge.gitcmd import EMPTY_TREE, Git, Scratch


@dataclass(frozen=True, slots=True)
class Entry:
    mode: str
    type: str
    sha: str


@dataclass(frozen=True, slots=True)
class Change:
    sha: str
    mode: str | None = None  # None: keep the existing file's mode, else a regular file


def build_tree(g: Git, work: Scratch, parent: str, artifact: ValidArtifact, *, text_path: str) -> str:
    """The tree of `parent` with the artifact applied. `g` must carry a private index (gitcmd.scratch)."""
    if artifact.kind is ArtifactKind.PATCH:
        changes, listing = _apply_patch(g, parent, artifact.content)
        return splice(g, work, f"{parent}^{{tree}}", changes, listing=listing)
    if artifact.kind is ArtifactKind.FILES:
        changes = dict(_blobs(g, work, artifact.files))
    else:
        body = artifact.content if artifact.content.endswith("\n") else artifact.content + "\n"
        changes = dict(_blobs(g, work, {check_path(text_path): body}))
    return splice(g, work, f"{parent}^{{tree}}", changes)


def _blobs(g: Git, work: Scratch, files: dict[str, str]) -> list[tuple[str, Change]]:
    """Write every file as a blob with one `git hash-object` for the lot."""
    names = []
    for n, body in enumerate(files.values()):
        name = work.path(f"blob-{n}")
        name.write_bytes(body.encode())
        names.append(str(name))
    shas = g.run("hash-object", "-w", "--no-filters", "--stdin-paths", stdin="\n".join(names).encode())
    return [(path, Change(sha)) for path, sha in zip(files, shas.split(), strict=True)]


def _strip_level(patch: str) -> int:
    """git writes a/ and b/ prefixes; a hand-made diff may not have them."""
    names = [
        name for pf in PatchSet(patch) for name in (pf.source_file, pf.target_file) if name != "/dev/null"
    ]
    return 1 if names and all(n.startswith(("a/", "b/")) for n in names) else 0


def _patch_paths(patch: str, strip: int) -> list[str]:
    paths: list[str] = []
    for pf in PatchSet(patch):
        for name in (pf.source_file, pf.target_file):
            if name != "/dev/null":
                paths.append(check_path(name.split("/", strip)[-1] if strip else name))
    return list(dict.fromkeys(paths))


Listing = dict[str, dict[str, Entry]]  # directory -> its entries by name


def _apply_patch(g: Git, parent: str, patch: str) -> tuple[dict[str, Change | None], Listing]:
    """`git apply --cached --3way` on an index holding only the paths the patch names."""
    strip = _strip_level(patch)
    paths = _patch_paths(patch, strip)
    dirs = list_dirs(g, f"{parent}^{{tree}}", paths)
    before: dict[str, tuple[str, str]] = {}
    for path in paths:
        folder, _, name = path.rpartition("/")
        entry = dirs.get(folder, {}).get(name)
        if entry is not None and entry.type == "blob":
            before[path] = (entry.mode, entry.sha)
    if before:
        info = "".join(f"{mode} {sha}\t{path}\0" for path, (mode, sha) in before.items())
        g.run("update-index", "-z", "--index-info", stdin=info.encode())
    status, out, err = g.run_raw(
        "apply", "--cached", "--3way", f"-p{strip}", "--whitespace=nowarn", stdin=patch.encode()
    )
    if status != 0:
        raise PatchDoesNotApply(_git_message(err or out.decode("utf-8", "replace")))
    after: dict[str, tuple[str, str]] = {}
    for line in filter(None, g.run("ls-files", "-s", "-z").split("\0")):
        meta, path = line.split("\t", 1)
        mode, sha, stage = meta.split()
        if stage != "0":
            raise PatchDoesNotApply(f"the patch leaves a conflict in {path}")
        after[path] = (mode, sha)
    changes: dict[str, Change | None] = {p: None for p in before if p not in after}
    changes.update({p: Change(sha, mode) for p, (mode, sha) in after.items() if before.get(p) != (mode, sha)})
    return changes, dirs


def _git_message(text: str) -> str:
    # `--3way` narrates the files it did apply; the reader wants the failures.
    lines = [ln for ln in text.strip().splitlines() if not ln.startswith(("Applied patch", "Checking patch"))]
    return "\n".join(lines) or "git apply failed"


def _folders(paths: list[str] | set[str]) -> set[str]:
    """Every directory on the way to the paths, the root ("") included."""
    found = {""}
    for path in paths:
        parts = path.split("/")[:-1]
        found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return found


def list_dirs(g: Git, root: str, paths: list[str] | set[str]) -> Listing:
    """The entries of each directory on the way to `paths`, with a single `git ls-tree`.

    Non-recursive ls-tree with the pathspecs `.` and `<dir>/` prints each such directory's children;
    a child that is itself one of those directories is descended into instead of printed, which
    is fine: it is rewritten from its own children anyway.
    """
    folders = _folders(paths)
    specs = [".", *(f"{d}/" for d in sorted(folders) if d)]
    listing: Listing = {d: {} for d in folders}
    for line in filter(None, g.run("ls-tree", "-z", "--full-tree", root, "--", *specs).split("\0")):
        meta, path = line.split("\t", 1)
        mode, kind, sha = meta.split()
        folder, _, name = path.rpartition("/")
        if folder in listing:
            listing[folder][name] = Entry(mode, kind, sha)
    return listing


def splice(
    g: Git, work: Scratch, root: str, changes: dict[str, Change | None], *, listing: Listing | None = None
) -> str:
    """`root` (a tree-ish) with each path set to a blob (or removed, for None).

    Reads the touched directories with one ls-tree, builds their new tree objects here bottom-up,
    and writes them all with one `git hash-object`; git's answer must match our own hashes.
    """
    if not changes:
        return g.run("rev-parse", root).strip()
    if listing is None:  # a patch's caller already listed every directory its paths touch
        listing = list_dirs(g, root, set(changes))
    trees: dict[str, bytes] = {}  # sha -> raw tree object
    built: dict[str, str | None] = {}  # directory -> its new tree (None: now empty)
    for folder in sorted(listing, key=lambda d: d.count("/") if d else -1, reverse=True):
        entries = dict(listing[folder])
        prefix = f"{folder}/" if folder else ""
        for path, change in changes.items():
            parent, _, name = path.rpartition("/")
            if parent != folder:
                continue
            existing = entries.get(name)
            if f"{prefix}{name}" in listing or (existing is not None and existing.type != "blob"):
                if change is not None:
                    raise _clash(f"{prefix}{name} is a directory")
            if change is None:
                entries.pop(name, None)
            else:
                keep = existing.mode if existing is not None else "100644"
                entries[name] = Entry(change.mode or keep, "blob", change.sha)
        for sub, sha in built.items():
            parent, _, name = sub.rpartition("/")
            if parent != folder:
                continue
            existing = entries.get(name)
            if existing is not None and existing.type != "tree":
                raise _clash(f"{prefix}{name} is a file, not a directory")
            if sha is None:
                entries.pop(name, None)
            else:
                entries[name] = Entry("40000", "tree", sha)
        built[folder] = _tree_object(entries, trees) if entries else None
    _write_trees(g, work, trees)
    return built[""] or EMPTY_TREE


def _tree_object(entries: dict[str, Entry], trees: dict[str, bytes]) -> str:
    """Git's tree encoding: entries sorted by name, a directory sorting as if it ended in '/'."""
    order = sorted(entries.items(), key=lambda kv: kv[0].encode() + (b"/" if kv[1].type == "tree" else b""))
    body = b"".join(
        f"{e.mode.lstrip('0')} {name}".encode() + b"\0" + bytes.fromhex(e.sha) for name, e in order
    )
    raw = b"tree %d\0" % len(body) + body
    sha = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
    trees[sha] = body
    return sha


def _write_trees(g: Git, work: Scratch, trees: dict[str, bytes]) -> None:
    if not trees:
        return
    files = []
    for sha, body in trees.items():
        path = work.path(f"tree-{sha}")
        path.write_bytes(body)
        files.append(str(path))
    written = g.run("hash-object", "-t", "tree", "-w", "--stdin-paths", stdin="\n".join(files).encode())
    if written.split() != list(trees):  # never store a tree git would hash differently
        raise RuntimeError("tree encoding mismatch between OSIRIS and git")


def _clash(detail: str) -> PatchDoesNotApply:
    return PatchDoesNotApply(f"the artifact cannot be placed in the tree: {detail}")
