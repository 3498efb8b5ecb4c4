"""What an agent may put in a git tree: names, modes, symlink targets, `.gitmodules`.

The one place for these rules. Submissions (REST and MCP alike) check every path and mode an
artifact names; the code hosts check the entries a patch actually produced (a symlink's target or a
`.gitmodules` only exists once the patch is applied). The rules follow git's own `fsck.c`
(hasDotgit, hasDot, hasDotdot, fullPathname, gitmodulesName/Url/Path/Symlink, gitattributesSymlink,
badFilemode) and go further where git relies on a client setting to stay safe: an `ext::` submodule
URL, a symlink to `/etc/passwd` or out of the tree, a gitlink. The local host also runs git's own
checks on every tree it builds (`trees.fsck_objects`) as a second line.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import unquote

from osiris.app.errors import InvalidArtifact

REGULAR, EXECUTABLE, SYMLINK, GITLINK, TREE = "100644", "100755", "120000", "160000", "40000"
ALLOWED_MODES = frozenset({REGULAR, EXECUTABLE, SYMLINK})
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_GITMODULES_BYTES = 64 * 1024
MAX_GITATTRIBUTES_LINE = 2048  # git's own limit (fsck gitattributesLineLength, newer git)

# Code points HFS+ ignores when comparing names, so ".g\u200cit" is ".git" there (git's is_hfs_dotgit).
_HFS_IGNORED = dict.fromkeys([*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF])
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Files git gives a meaning to, with the NTFS 8.3 short names it checks for (is_ntfs_dot_generic).
_SPECIAL = {
    ".gitmodules": re.compile(r"(gitmod|gi7eba)~\d+"),
    ".gitattributes": re.compile(r"(gitatt|gi7d29)~\d+"),
    ".gitignore": re.compile(r"(gitign|gi250a)~\d+"),
    ".mailmap": re.compile(r"(mailma|maba30)~\d+"),
}
_DOTGIT_SHORT = re.compile(r"git~\d+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_+,=@-][A-Za-z0-9._+,=@-]*")  # the common case


def _fold(name: str) -> str:
    """How a case-insensitive HFS+ or NTFS checkout may read a name: ignorable code points dropped,
    case folded, an NTFS stream suffix (`name:stream`) cut, trailing dots and spaces dropped."""
    folded = name.translate(_HFS_IGNORED).casefold().split(":", 1)[0]
    return folded.rstrip(" .")


def is_dotgit(name: str) -> bool:
    """A name some file system reads as `.git` (`.GIT`, `.git.`, `.g\\u200cit`, `git~1`, …)."""
    folded = _fold(name)
    return folded == ".git" or bool(_DOTGIT_SHORT.fullmatch(folded))


def special_name(name: str) -> str | None:
    """`.gitmodules`, `.gitattributes`, `.gitignore` or `.mailmap` if some file system reads `name`
    as that file, else None."""
    if _SAFE_NAME.fullmatch(name):
        return None
    folded = _fold(name)
    for special, short in _SPECIAL.items():
        if folded == special or short.fullmatch(folded):
            return special
    return None


def check_path(path: str) -> str:
    """A repository-relative path that cannot escape the work tree or touch git's own files."""
    if not isinstance(path, str) or not path:
        raise InvalidArtifact("empty path")
    try:
        size = len(path.encode())
    except UnicodeEncodeError:
        raise InvalidArtifact(f"path is not valid UTF-8: {path!r}") from None
    if size > MAX_PATH_BYTES:
        raise InvalidArtifact(f"path is longer than {MAX_PATH_BYTES} bytes: {path[:80]!r}…")
    if _CONTROL.search(path) or "\\" in path:
        raise InvalidArtifact(f"path may not contain control characters or backslashes: {path!r}")
    if PurePosixPath(path).is_absolute():
        raise InvalidArtifact(f"absolute path not allowed: {path}")
    parts = path.split("/")
    for n, part in enumerate(parts):
        if part in ("", ".", ".."):
            raise InvalidArtifact(f"path may not contain '.', '..' or empty parts: {path}")
        if len(part.encode()) > MAX_NAME_BYTES:
            raise InvalidArtifact(f"a name in the path is longer than {MAX_NAME_BYTES} bytes: {path[:80]!r}…")
        if _SAFE_NAME.fullmatch(part):  # cannot start with "." nor hold "~" or ":": nothing to fold
            continue
        if is_dotgit(part):
            raise InvalidArtifact(f"path may not touch .git (in any spelling): {path!r}")
        special = special_name(part)
        if special is not None and (part != special or n != len(parts) - 1):
            # Only the exact spelling, and only as a file: anything else is read as the special
            # file by some checkout while escaping the checks below.
            raise InvalidArtifact(f"{path!r} would be read as {special} by some file systems")
    return path


def check_mode(path: str, mode: str) -> str:
    """Regular, executable or symlink; never a gitlink (submodule commit) or anything stranger."""
    if mode == GITLINK:
        raise InvalidArtifact(f"{path}: submodules (gitlinks, mode 160000) are not accepted")
    if mode not in ALLOWED_MODES:
        raise InvalidArtifact(f"{path}: file mode {mode} is not accepted (use 100644, 100755 or 120000)")
    if mode == SYMLINK and special_name(path.rpartition("/")[2]) is not None:
        raise InvalidArtifact(f"{path}: git's own files may not be symbolic links")
    return mode


def check_symlink_target(path: str, target: str) -> None:
    """A symlink must point inside the tree: relative, `..` only as a leading run no deeper than
    the link's own folder (a `..` after a name could pass through another symlink and climb out),
    never into `.git`."""
    if not target or len(target.encode("utf-8", "replace")) >= MAX_PATH_BYTES:
        raise InvalidArtifact(f"{path}: symlink target is empty or too long")
    if _CONTROL.search(target) or "\\" in target:
        raise InvalidArtifact(f"{path}: symlink target may not contain control characters or backslashes")
    if target.startswith("/"):
        raise InvalidArtifact(f"{path}: symlink points outside the repository ({target!r})")
    depth = path.count("/")
    climbing = True
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if not climbing or depth < 0:
                raise InvalidArtifact(f"{path}: symlink points outside the repository ({target!r})")
            continue
        climbing = False
        if is_dotgit(part):
            raise InvalidArtifact(f"{path}: symlink points into .git ({target!r})")


_SECTION = re.compile(r'\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\\n]|\\["\\])*)")?\s*\]\s*(?:[#;].*)?')
_KEY_VALUE = re.compile(r"([A-Za-z][A-Za-z0-9-]*)\s*(?:=\s*(.*?))?\s*")
_URL_SCHEMES = ("https://", "http://", "ssh://", "git://", "git+ssh://", "ssh+git://")
_SCP_LIKE = re.compile(r"(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9][A-Za-z0-9.-]*:(?!//)[^:]+")


def check_gitmodules(content: str) -> None:
    """`.gitmodules` as git's fsck reads it (gitmodulesName/Path/Url/Update), stricter: only plain
    network or relative URLs, no transport helpers (`ext::`, `fd::`), nothing git could not parse."""
    if len(content.encode()) > MAX_GITMODULES_BYTES:
        raise InvalidArtifact(f".gitmodules is larger than {MAX_GITMODULES_BYTES} bytes")
    section: tuple[str, str | None] | None = None
    for number, raw in enumerate(content.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        where = f".gitmodules line {number}"
        header = _SECTION.fullmatch(line)
        if header:
            section = (header.group(1).lower(), header.group(2))
            if section[0] == "submodule":
                _check_submodule_name(where, section[1])
            continue
        pair = _KEY_VALUE.fullmatch(line)
        if pair is None or section is None:
            raise InvalidArtifact(f"{where}: cannot be parsed safely")
        key, value = pair.group(1).lower(), _config_value(where, pair.group(2) or "")
        if section[0] != "submodule":
            continue
        if key == "url":
            _check_submodule_url(where, value)
        elif key == "path":
            if value.startswith("-"):
                raise InvalidArtifact(f"{where}: submodule path may not look like an option")
            check_path(value)
        elif key == "update" and value.startswith("!"):
            raise InvalidArtifact(f"{where}: submodule update may not run a command")


def _config_value(where: str, value: str) -> str:
    # Plain values only: quoting, escapes and continuation lines are where parsers disagree.
    if '"' in value or "\\" in value:
        raise InvalidArtifact(f"{where}: quoted or escaped values are not accepted in .gitmodules")
    return re.split(r"\s[#;]", value, maxsplit=1)[0].strip()


def _check_submodule_name(where: str, name: str | None) -> None:
    if not name or name.startswith("-") or _CONTROL.search(name):
        raise InvalidArtifact(f"{where}: disallowed submodule name {name!r}")
    if ".." in re.split(r"[/\\]", name):
        raise InvalidArtifact(f"{where}: submodule name may not contain '..' ({name!r})")


def _check_submodule_url(where: str, url: str) -> None:
    decoded = unquote(url)
    if not url or url.startswith("-") or "::" in url or _CONTROL.search(decoded):
        raise InvalidArtifact(f"{where}: disallowed submodule url {url!r}")
    if url.startswith(("./", "../")):
        return
    if url.lower().startswith(_URL_SCHEMES):
        host = url.split("://", 1)[1]
        if host.startswith("-") or "@-" in host:
            raise InvalidArtifact(f"{where}: disallowed submodule url {url!r}")
        return
    if _SCP_LIKE.fullmatch(url) and not url.split(":", 1)[0].rpartition("@")[2].startswith("-"):
        return
    raise InvalidArtifact(f"{where}: submodule url must be https, ssh, git or relative ({url!r})")


def check_gitattributes(content: str) -> None:
    if any(len(line.encode()) > MAX_GITATTRIBUTES_LINE for line in content.splitlines()):
        raise InvalidArtifact(f".gitattributes has a line longer than {MAX_GITATTRIBUTES_LINE} bytes")


def check_entry(path: str, mode: str, content: str | bytes | None) -> None:
    """One entry as it will be in the tree: its path, mode and (for the files whose content git
    acts on) its content. `content` is None for a deletion."""
    check_path(path)
    if content is None:
        return
    check_mode(path, mode)
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    if mode == SYMLINK:
        check_symlink_target(path, text)
        return
    name = path.rpartition("/")[2]
    if name == ".gitmodules":
        check_gitmodules(text)
    elif name == ".gitattributes":
        check_gitattributes(text)


def needs_content(path: str, mode: str) -> bool:
    """Whether check_entry must see the content (symlinks, `.gitmodules`, `.gitattributes`)."""
    return mode == SYMLINK or path.rpartition("/")[2] in (".gitmodules", ".gitattributes")
