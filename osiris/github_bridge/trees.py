"""Artifact → git tree, without a checkout and without reading the whole tree.

Only the touched paths are loaded into a private index (for a patch) or hashed (for files and
text); the new root tree is then spliced together by rewriting just the directories on those paths,
`git ls-tree` in and `git mktree` out. The cost follows the number of touched paths and the width of
their directories, not the number of files in the repository.

A later version of a patch has two readings (`build_version_tree`): a diff against the task branch
head, or a diff against the base where the branch starts (what an agent produces after a review
round); the first that applies wins, and the tree it gives is committed on top of the branch.

Every tree built here is checked twice before anything can point at it: each entry the artifact
produced against `git_safety` (a symlink's target and a `.gitmodules` only exist once a patch is
applied), then the new trees alone by git itself (`fsck_trees`, `index-pack --strict`) before they are
written, so the object store never holds a tree git would refuse.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from osiris.app.artifacts import ValidArtifact, check_path, patch_paths
from osiris.app.errors import InvalidArtifact, PatchDoesNotApply
from osiris.app.git_safety import EXECUTABLE, REGULAR, check_entry, check_mode, needs_content
from osiris.app.models import ArtifactKind
from osiris.github_bridge.gitcmd import EMPTY_TREE, Git, GitFailed, Scratch, scratch

# git's fsck messages that are only "info" by default, made errors; `--strict` makes warnings errors.
_FSCK_STRICT = (
    "--strict=badFilemode=error,gitmodulesParse=error,gitmodulesSymlink=error,"
    "gitattributesSymlink=error,gitignoreSymlink=error,mailmapSymlink=error,gitmodulesLarge=error"
)


@dataclass(frozen=True, slots=True)
class Entry:
    mode: str
    type: str
    sha: str


@dataclass(frozen=True, slots=True)
class Change:
    sha: str
    mode: str | None = None  # None: keep an existing executable bit, else a regular file


@dataclass(frozen=True, slots=True)
class Base:
    """A commit a version's patch may be a diff against, and how to name it to the agent."""

    sha: str
    label: str


def build_version_tree(g: Git, bases: Sequence[Base], artifact: ValidArtifact, *, text_path: str) -> str:
    """The tree of a new version: the artifact applied to the first of `bases` a patch applies to.

    `bases` is the task branch head, then the commit the branch starts from (its merge base with the
    base branch); one entry for a first version. A patch that applies to the branch head is read as
    a diff against it, even if it would apply to the start too, so the answer depends on the patch
    and those two commits alone. Only "does not apply" moves on to the next reading: a refused entry
    (InvalidArtifact) is final. `g` is the repository itself: each attempt gets a fresh private index,
    so nothing of a failed attempt leaks into the next. Files and text replace content: one attempt.
    """
    wanted = list({b.sha: b for b in bases}.values())
    if artifact.kind is not ArtifactKind.PATCH:
        wanted = wanted[:1]
    failed: list[tuple[Base, PatchDoesNotApply]] = []
    for base in wanted:
        with scratch(g) as (w, work):
            try:
                return build_tree(w, work, base.sha, artifact, text_path=text_path)
            except PatchDoesNotApply as exc:
                failed.append((base, exc))
    if len(failed) == 1:
        raise failed[0][1]
    (head, on_head), (start, on_start) = failed[0], failed[-1]
    raise PatchDoesNotApply.on_neither(head.label, on_head, start.label, on_start)


def build_tree(g: Git, work: Scratch, parent: str, artifact: ValidArtifact, *, text_path: str) -> str:
    """The tree of `parent` with the artifact applied. `g` must carry a private index (gitcmd.scratch).

    Raises InvalidArtifact when the result holds an entry OSIRIS or git's fsck refuses.
    """
    listing: Listing | None = None
    if artifact.kind is ArtifactKind.PATCH:
        changes, listing = _apply_patch(g, parent, artifact.content)
        _check_applied(g, changes)
    elif artifact.kind is ArtifactKind.FILES:
        changes = dict(_blobs(g, work, artifact.files))
    else:
        body = artifact.content if artifact.content.endswith("\n") else artifact.content + "\n"
        changes = dict(_blobs(g, work, {check_path(text_path): body}))
    root, trees = _splice(g, f"{parent}^{{tree}}", changes, listing=listing)
    fsck_trees(g, work, trees)
    _write_trees(g, work, trees)
    return root


def _check_applied(g: Git, changes: dict[str, Change | None]) -> None:
    """What `git apply` actually produced: modes, and the content of symlinks and git's own files."""
    wanted: dict[str, tuple[str, str]] = {}
    for path, change in changes.items():
        if change is None:
            continue
        mode = change.mode or REGULAR
        check_mode(path, mode)
        check_entry(path, mode, None)
        if needs_content(path, mode):
            wanted[path] = (mode, change.sha)
    if not wanted:
        return
    status, out, err = g.run_raw(
        "cat-file", "--batch", stdin="".join(f"{sha}\n" for _, sha in wanted.values()).encode()
    )
    if status != 0:
        raise GitFailed(("cat-file",), status, err)
    at = 0
    for path, (mode, _) in wanted.items():
        header_end = out.index(b"\n", at)
        size = int(out[at:header_end].split()[2])
        body = out[header_end + 1 : header_end + 1 + size]
        at = header_end + 1 + size + 1
        check_entry(path, mode, body)


def fsck_trees(g: Git, work: Scratch, trees: dict[str, bytes]) -> None:
    """git's own fsck of just the new trees, before they enter the object store.

    They go to `git index-pack --strict` as a pack written here, so nothing git refuses is ever
    stored, and the check costs what the new trees cost, not what the repository holds. index-pack
    also reads any `.gitmodules` they name (from the repository) and checks that every blob and
    subtree they point at exists. Raises InvalidArtifact with git's words.
    """
    if not trees:
        return
    pack = _pack(trees)
    tag = uuid.uuid4().hex[:8]  # a Scratch may check more than once
    path, index = work.path(f"fsck-{tag}.pack"), work.path(f"fsck-{tag}.idx")
    try:
        status, _, err = g.run_raw(
            "index-pack", _FSCK_STRICT, "--no-rev-index", "--stdin", "-o", str(index), str(path), stdin=pack
        )
    finally:
        path.unlink(missing_ok=True)
        index.unlink(missing_ok=True)
    if status != 0:
        found = [ln.split(": ", 2)[-1] for ln in err.splitlines() if ln.startswith("error: object ")]
        if not found:  # git itself failed, not the artifact
            raise GitFailed(("index-pack",), status, err)
        raise InvalidArtifact(f"git's fsck refuses the tree: {'; '.join(dict.fromkeys(found))}")


def _pack(trees: dict[str, bytes]) -> bytes:
    """A version 2 pack of whole (undeltified) tree objects."""
    out = [b"PACK", struct.pack(">II", 2, len(trees))]
    for body in trees.values():
        size = len(body)
        header = bytearray([(2 << 4) | (size & 0x0F) | (0x80 if size > 0x0F else 0)])  # 2: tree
        size >>= 4
        while size:
            header.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
            size >>= 7
        out += [bytes(header), zlib.compress(body, 1)]
    data = b"".join(out)
    return data + hashlib.sha1(data, usedforsecurity=False).digest()


def _blobs(g: Git, work: Scratch, files: dict[str, str]) -> list[tuple[str, Change]]:
    """Write every file as a blob with one `git hash-object` for the lot."""
    names = []
    for n, body in enumerate(files.values()):
        name = work.path(f"blob-{n}")
        name.write_bytes(body.encode())
        names.append(str(name))
    shas = g.run("hash-object", "-w", "--no-filters", "--stdin-paths", stdin="\n".join(names).encode())
    return [(path, Change(sha)) for path, sha in zip(files, shas.split(), strict=True)]


Listing = dict[str, dict[str, Entry]]  # directory -> its entries by name


def _apply_patch(g: Git, parent: str, patch: str) -> tuple[dict[str, Change | None], Listing]:
    """`git apply --cached` on an index holding only the paths the patch names.

    Exact context (an offset is fine), as the GitHub host applies a patch: no `--3way`, which since
    git 2.32 merges first whenever the patch names its preimage blobs, and would quietly keep a line
    the task branch changed that a cumulative diff against the base gives back (a revert after
    review), instead of failing over to the second reading.
    """
    strip, paths = patch_paths(patch)
    dirs = list_dirs(g, f"{parent}^{{tree}}", list(paths))
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
        "apply", "--cached", f"-p{strip}", "--whitespace=nowarn", stdin=patch.encode()
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
    # git may narrate the files it did apply; the reader wants the failures.
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
    tree, trees = _splice(g, root, changes, listing=listing)
    _write_trees(g, work, trees)
    return tree


def _splice(
    g: Git, root: str, changes: dict[str, Change | None], *, listing: Listing | None
) -> tuple[str, dict[str, bytes]]:
    """The new root tree and the tree objects it needs (sha -> body), not yet written."""
    if not changes:
        return g.run("rev-parse", root).strip(), {}
    if listing is None:  # a patch's caller already listed every directory its paths touch
        listing = list_dirs(g, root, set(changes))
    by_folder: dict[str, list[tuple[str, Change | None]]] = {}
    for path, change in changes.items():
        parent, _, name = path.rpartition("/")
        by_folder.setdefault(parent, []).append((name, change))
    trees: dict[str, bytes] = {}  # sha -> raw tree object
    built: dict[str, str | None] = {}  # directory -> its new tree (None: now empty)
    subdirs: dict[str, list[str]] = {}
    for folder in listing:
        if folder:
            subdirs.setdefault(folder.rpartition("/")[0], []).append(folder)
    for folder in sorted(listing, key=lambda d: d.count("/") if d else -1, reverse=True):
        entries = dict(listing[folder])
        prefix = f"{folder}/" if folder else ""
        _set_files(entries, prefix, by_folder.get(folder, ()), listing)
        _set_subtrees(
            entries, prefix, {sub.rpartition("/")[2]: built[sub] for sub in subdirs.get(folder, ())}
        )
        built[folder] = _tree_object(entries, trees) if entries else None
    return built[""] or EMPTY_TREE, trees


def _set_files(
    entries: dict[str, Entry], prefix: str, changes: Iterable[tuple[str, Change | None]], listing: Listing
) -> None:
    """One directory's changed files, written into its `entries` (None removes the file)."""
    for name, change in changes:
        existing = entries.get(name)
        if f"{prefix}{name}" in listing or (existing is not None and existing.type != "blob"):
            if change is not None:
                raise _clash(f"{prefix}{name} is a directory")
        if change is None:
            entries.pop(name, None)
        else:
            # A whole-file write keeps an executable bit, never a symlink: new content for a
            # symlink would be a new target nobody checked.
            keep = EXECUTABLE if existing is not None and existing.mode == EXECUTABLE else REGULAR
            entries[name] = Entry(change.mode or keep, "blob", change.sha)


def _set_subtrees(entries: dict[str, Entry], prefix: str, subtrees: dict[str, str | None]) -> None:
    """One directory's rebuilt subdirectories (name -> new tree, None: now empty) into its `entries`."""
    for name, sha in subtrees.items():
        existing = entries.get(name)
        if existing is not None and existing.type != "tree":
            raise _clash(f"{prefix}{name} is a file, not a directory")
        if sha is None:
            entries.pop(name, None)
        else:
            entries[name] = Entry("40000", "tree", sha)


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
