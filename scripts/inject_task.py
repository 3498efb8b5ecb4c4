"""Create a task the way a chat channel would, to try OSIRIS without any channel.

It goes through the same intake service as WhatsApp, Slack and email (allowlists aside: the
"script" channel has none), so the task gets a requester, a thread and a priority from keywords.

    .venv/bin/python scripts/inject_task.py                      # asks for title and description
    .venv/bin/python scripts/inject_task.py --title "Fix login" --description "urgent: 500 on /login"

Uses the same settings as the server (DATABASE_URL, or the embedded server under OSIRIS_DATA_DIR);
it works while `osiris serve` runs on the same data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid

from osiris.app import db
from osiris.app.config import Settings
from osiris.ingest import intake
from osiris.server import start_runtime


def _ask(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip()


async def inject(title: str, description: str, requester: str) -> intake.Outcome:
    settings = Settings()
    thread = f"script:{uuid.uuid4()}"
    inbound = intake.Inbound(
        channel="script",
        provider="script",
        delivery_id=thread,
        sender=requester,
        text=f"{title}\n\n{description}".strip(),
        new_thread=thread,
        subject=title,
    )
    async with start_runtime(settings) as runtime, db.transaction(runtime.sessions) as session:
        return await intake.receive(
            session, inbound, policy=intake.Policy.from_settings(settings), limiter=None
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--title")
    ap.add_argument("--description")
    ap.add_argument("--requester", default=f"script:{getpass.getuser()}", help="who is asking")
    args = ap.parse_args()
    title = args.title or _ask("Title: ")
    description = args.description if args.description is not None else _ask("Description: ")
    if not title:
        print("a title is needed", file=sys.stderr)
        return 2
    outcome = asyncio.run(inject(title, description, args.requester))
    print(outcome.reply, file=sys.stderr)
    if outcome.task_id is None:
        return 1
    print(outcome.task_id)  # alone on stdout, for scripts
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
