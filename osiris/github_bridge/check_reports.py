"""OSIRIS's pre-review checks as GitHub shows them: a check run per version, or commit statuses.

A check run needs a GitHub App (`checks:write`); with a plain token each command is a commit status
instead, context `osiris/<command>`. Both come back to us as `check_run` / `status` webhooks, which
`ci_webhooks` recognises (external id, our App's id, the `osiris/` context) and does not count again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

CHECK_RUN_NAME = "OSIRIS checks"
EXTERNAL_ID_PREFIX = "osiris-check-run-"
CONTEXT_PREFIX = "osiris/"
GITHUB_TEXT_LIMIT = 65535  # characters, for a check run's output summary and text
_STATUS_DESCRIPTION_LIMIT = 140


def external_id(run_id: int) -> str:
    return f"{EXTERNAL_ID_PREFIX}{run_id}"


def contexts(commands: list[str]) -> list[str]:
    """One status context per command, `osiris/<command>`, unique even when commands repeat."""
    out: list[str] = []
    for command in commands:
        base = CONTEXT_PREFIX + " ".join(command.split())[:100]
        name, n = base, 2
        while name in out:
            name, n = f"{base} #{n}", n + 1
        out.append(name)
    return out


def conclusion(status: str, results: list[dict[str, Any]]) -> str:
    """A finished CheckRun's status as a check run conclusion."""
    if status == "passed":
        return "success"
    if status == "failed":
        failing = [r for r in results if not r.get("passed")]
        return "timed_out" if failing and all(r.get("timed_out") for r in failing) else "failure"
    return "neutral"  # error: the checks could not run, or the configuration is invalid


def _why(r: dict[str, Any]) -> str:
    if r.get("timed_out"):
        return "timed out"
    if r.get("exit_code") is None:
        return "did not run"
    return f"exit {r['exit_code']}"


def title(status: str, results: list[dict[str, Any]]) -> str:
    if status in ("queued", "running"):
        return "Running the repository's checks"
    failing = sum(1 for r in results if not r.get("passed"))
    if status == "passed":
        return f"All {len(results)} check{'s' if len(results) != 1 else ''} passed"
    if status == "failed":
        return f"{failing} of {len(results)} checks failed"
    return "The checks could not run"


def summary(run: Any, commands: list[str]) -> str:
    mode = "blocks review" if run.mode == "block" else "informs reviewers"
    lines = [
        f"Version {run.version} · `{run.commit_sha[:12]}` · mode `{run.mode}` ({mode}) · {run.source}",
        "",
    ]
    if not run.results:
        lines += ["| command |", "|---|", *(f"| `{_cell(c)}` |" for c in commands)]
        return _cap(lines)
    lines += ["| command | result | duration |", "|---|---|---|"]
    for r in run.results:
        mark = "✅ passed" if r.get("passed") else f"❌ {_why(r)}"
        lines.append(f"| `{_cell(r['command'])}` | {mark} | {r.get('duration_ms', 0) / 1000:.1f} s |")
    return _cap(lines)


def text(results: list[dict[str, Any]]) -> str:
    """The failing commands' output (the end of it, when it is long), capped to GitHub's limit."""
    parts = []
    for r in results:
        if r.get("passed"):
            continue
        cut = " (the end of its output)" if r.get("output_truncated") else ""
        parts.append(
            f"### `{_cell(r['command'])}`: {_why(r)}{cut}\n\n```\n{r.get('output', '').rstrip()}\n```\n"
        )
    body = "\n".join(parts)
    if len(body) > GITHUB_TEXT_LIMIT:
        note = "_…cut to GitHub's limit; the start is missing._\n\n```\n"
        body = note + body[-(GITHUB_TEXT_LIMIT - len(note)) :]
    return body


def check_run_body(run: Any, commands: list[str], details_url: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": CHECK_RUN_NAME,
        "head_sha": run.commit_sha,
        "external_id": external_id(run.id),
        "details_url": details_url,
        "output": {"title": title(run.status, run.results), "summary": summary(run, commands)},
    }
    if run.finished_at is None:
        body |= {"status": "in_progress", "started_at": _iso(run.created_at)}
    else:
        body |= {
            "status": "completed",
            "conclusion": conclusion(run.status, run.results),
            "completed_at": _iso(run.finished_at),
        }
        body["output"]["text"] = text(run.results)
    return body


def statuses(run: Any, commands: list[str], target_url: str) -> list[tuple[str, dict[str, Any]]]:
    """(context, body) for each command's commit status."""
    out = []
    by_command = {r["command"]: r for r in run.results}
    setup = next((r for r in run.results if r["command"] not in commands), None)  # could not run
    for command, context in zip(commands, contexts(commands), strict=True):
        r = by_command.get(command)
        if run.finished_at is None:
            state, description = "pending", "running"
        elif r is None:
            why = (setup or {}).get("output") or "did not run"
            state, description = "error", why.strip().splitlines()[0] if why.strip() else "did not run"
        elif r.get("passed"):
            state, description = "success", f"passed in {r.get('duration_ms', 0) / 1000:.1f} s"
        elif r.get("exit_code") is None and not r.get("timed_out"):
            state, description = "error", (r.get("output") or "could not run").splitlines()[0]
        else:
            state, description = "failure", f"{_why(r)} after {r.get('duration_ms', 0) / 1000:.1f} s"
        out.append(
            (
                context,
                {
                    "state": state,
                    "context": context,
                    "description": description[:_STATUS_DESCRIPTION_LIMIT],
                    "target_url": target_url,
                },
            )
        )
    return out


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("`", "'")[:200]


def _cap(lines: list[str]) -> str:
    return "\n".join(lines)[:GITHUB_TEXT_LIMIT]


def _iso(when: datetime | None) -> str:
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
