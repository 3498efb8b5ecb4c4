"""The `osiris` command: serve, worker, migrate, db grant-checks-role, mcp, user
create/set-password/list, org create, token create/list/revoke, client create/list/revoke, telegram
set-webhook."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from osiris.app import process_env
from osiris.app.config import Settings

log = logging.getLogger("osiris.cli")


def _settings(args: argparse.Namespace) -> Settings:
    if getattr(args, "data_dir", None):
        os.environ["OSIRIS_DATA_DIR"] = str(args.data_dir)
    return Settings()


def proxy_options(settings: Settings) -> dict:
    """uvicorn's X-Forwarded-* handling, from OSIRIS_TRUSTED_PROXIES alone: uvicorn would otherwise
    believe any loopback peer (and FORWARDED_ALLOW_IPS from the environment), so anything relaying
    to 127.0.0.1 without rewriting the header (a tunnel) let a sender choose its address."""
    trusted = settings.server.trusted_proxies
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": ",".join(trusted) if trusted else ""}


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from osiris.app import logs
    from osiris.server import create_app

    settings = _settings(args)
    logs.configure(settings.server.log_level, json=settings.server.log_json)
    workers = args.workers or settings.server.workers
    # Read once: the secrets leave our environment (and /proc/<pid>/environ).
    removed = process_env.scrub()
    if workers > 1:
        # multiprocessing's resource tracker starts with the first worker and lives as long as we
        # do: started now, it never has them. The workers read their settings from our environment,
        # so the secrets go back into it, on the heap, where /proc does not show them; each worker
        # removes them from its own once read (app_from_environment).
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        os.environ.update(removed)
    options: dict = {
        "host": args.host or settings.server.host,
        "port": args.port or settings.server.port,
        "log_config": None,
        "timeout_graceful_shutdown": 10,
        # Live events are small JSON texts encoded once per process; compressing them again for
        # each WebSocket client cost more CPU than anything else per delivery (issue 17).
        "ws_per_message_deflate": False,
        **proxy_options(settings),
    }
    if workers > 1:
        from osiris.app.db import EmbeddedPostgres

        # The embedded server is created here, once: workers starting together would each run
        # initdb on the same folder. They share this postmaster; it stops after the last of them.
        embedded = EmbeddedPostgres(settings.data_dir) if settings.db.embedded else None
        if embedded is not None:
            embedded.start()
        try:
            # uvicorn's supervisor starts each worker from an import string; the settings reach
            # them through the environment (--data-dir is already there, see _settings).
            uvicorn.run("osiris.cli:app_from_environment", factory=True, workers=workers, **options)
        finally:
            if embedded is not None:
                embedded.stop()
    else:
        uvicorn.run(create_app(settings), **options)
    return 0


def app_from_environment():  # type: ignore[no-untyped-def]
    """The app of one `osiris serve --workers N` process."""
    from osiris.app import logs
    from osiris.server import create_app

    settings = Settings()
    process_env.scrub()
    logs.configure(settings.server.log_level, json=settings.server.log_json)
    return create_app(settings)


def cmd_worker(args: argparse.Namespace) -> int:
    from osiris.app import checks_role, jobs, logs
    from osiris.server import _sweep_leases, start_runtime

    settings = _settings(args)
    for field, given in (("jobs", args.jobs), ("skip_jobs", args.skip_jobs)):
        if given is not None:  # the flag wins over the environment
            kinds = [k.strip() for k in given.split(",") if k.strip()]
            settings = settings.model_copy(update={"worker": {field: kinds}})
    process_env.scrub()  # this process runs the checks: nothing of ours for them to find
    logs.configure(settings.server.log_level, json=settings.server.log_json)

    # A checks-only worker may run as a role that can change no task and own no table (`osiris db
    # grant-checks-role`): it never migrates (it waits for the schema the others migrate), and
    # returning expired claims and review reminders are the other workers' work.
    checks_only = bool(settings.worker.jobs) and set(settings.worker.jobs) <= {"run_checks"}

    async def run() -> None:
        async with start_runtime(settings, migrate=not checks_only or settings.db.embedded) as runtime:
            from osiris.server import install_services

            if checks_only and not settings.db.embedded:
                await checks_role.wait_for_schema(runtime.sessions)
            await install_services(runtime)
            kinds = jobs.handlers_for(settings)  # a misspelt kind stops here, before any work
            log.info("job worker takes: %s", ", ".join(sorted(kinds)))
            ctx = jobs.JobContext(runtime.sessions, settings, runtime.services)
            if args.drain:
                await jobs.drain(runtime.dsn, ctx)
                return
            sweeper = None if checks_only else asyncio.create_task(_sweep_leases(runtime))
            try:
                await jobs.Worker(runtime.dsn, ctx).run()
            finally:
                if sweeper is not None:
                    sweeper.cancel()

    asyncio.run(run())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from osiris.server import start_runtime

    async def run() -> None:
        async with start_runtime(_settings(args)):
            pass

    asyncio.run(run())
    print("database is at the latest migration", file=sys.stderr)
    return 0


def cmd_db_grant_checks_role(args: argparse.Namespace) -> int:
    from osiris.app import checks_role, db
    from osiris.server import start_runtime

    async def run() -> None:
        async with start_runtime(_settings(args)) as runtime, db.transaction(runtime.sessions) as session:
            await checks_role.grant(session, args.role)

    try:
        asyncio.run(run())
    except checks_role.RoleRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"database is at the latest migration; role {args.role} may now do only what the checks "
        "worker does (run it with `osiris worker --jobs run_checks`)",
        file=sys.stderr,
    )
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from osiris.mcp.stdio import main as stdio_main

    return stdio_main()


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return None


def cmd_user_create(args: argparse.Namespace) -> int:
    from osiris.app import accounts, db, organizations, routing
    from osiris.app.models import Role
    from osiris.server import start_runtime

    async def run() -> None:
        async with start_runtime(_settings(args)) as runtime, db.transaction(runtime.sessions) as session:
            if args.org:
                org = await organizations.organization_by_slug(session, args.org)
            else:
                org = await accounts.default_org(session)
            user = await accounts.create_user(
                session,
                org_id=org.id,
                username=args.name,
                role=Role(args.role),
                password=_read_password(args),
                github_login=args.github_login,
                is_superuser=args.superuser,
            )
            if args.skill:
                user.skills = routing.normalize_skills(args.skill)
            print(f"created {user.role} {user.username} (id {user.id})", file=sys.stderr)

    return _run_reporting_errors(run)


def _new_password(args: argparse.Namespace) -> str:
    """From stdin (never argv, where `ps` and shell history show it); asked twice on a terminal."""
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("error: the passwords differ")
    return first


def cmd_user_set_password(args: argparse.Namespace) -> int:
    from osiris.app import accounts, db
    from osiris.server import admin_password_path, start_runtime

    password = _new_password(args)
    settings = _settings(args)

    async def run() -> None:
        async with start_runtime(settings) as runtime, db.transaction(runtime.sessions) as session:
            user = await accounts.set_password(session, username=args.name, password=password)
        if user.username == "admin":  # the generated one is no longer the password
            admin_password_path(settings).unlink(missing_ok=True)
        print(f"password of {user.username} changed", file=sys.stderr)

    return _run_reporting_errors(run)


def _table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    cells = [tuple(header), *[tuple("-" if v is None else str(v) for v in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _when(value) -> str | None:  # type: ignore[no-untyped-def]
    return value.strftime("%Y-%m-%d %H:%M") if value else None


def cmd_user_list(args: argparse.Namespace) -> int:
    from osiris.app import accounts, db
    from osiris.server import start_runtime

    async def run() -> None:
        async with start_runtime(_settings(args)) as runtime, db.transaction(runtime.sessions) as session:
            users = await accounts.all_users(session)
        _table(
            ("ID", "USER", "ROLE", "ORG", "GITHUB", "FLAGS"),
            [
                (
                    u.id,
                    u.username,
                    u.role,
                    org,
                    u.github_login,
                    ",".join(
                        f for f, on in (("superuser", u.is_superuser), ("inactive", not u.is_active)) if on
                    ),
                )
                for u, org in users
            ],
        )

    return _run_reporting_errors(run)


def cmd_token_list(args: argparse.Namespace) -> int:
    from osiris.app import accounts, db
    from osiris.server import start_runtime

    async def run() -> None:
        async with start_runtime(_settings(args)) as runtime, db.transaction(runtime.sessions) as session:
            tokens = await accounts.all_tokens(session, username=args.user)
        _table(  # the prefix identifies a token; the secret itself was shown once and is not kept
            ("ID", "USER", "NAME", "PREFIX", "CREATED", "LAST USED", "EXPIRES", "REVOKED"),
            [
                (
                    t.id,
                    user,
                    t.name,
                    f"{t.display_prefix}…",
                    _when(t.created_at),
                    _when(t.last_used_at),
                    _when(t.expires_at),
                    _when(t.revoked_at),
                )
                for t, user in tokens
            ],
        )

    return _run_reporting_errors(run)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from osiris.app import accounts, db
    from osiris.app.actors import system_actor
    from osiris.server import start_runtime

    async def run() -> None:
        async with start_runtime(_settings(args)) as runtime, db.transaction(runtime.sessions) as session:
            # The service REST uses: its NOTIFY on commit evicts the token from every server's cache
            # and closes the WebSockets and MCP streams it opened.
            org_id = await accounts.token_org(session, args.id)
            token = await accounts.revoke_token(session, system_actor(org_id, "cli"), args.id)
        print(f"token {token.id} ({token.name}) revoked", file=sys.stderr)

    return _run_reporting_errors(run)


def cmd_org_create(args: argparse.Namespace) -> int:
    from osiris.app import db, organizations
    from osiris.server import start_runtime

    async def run() -> None:
        async with start_runtime(_settings(args)) as runtime, db.transaction(runtime.sessions) as session:
            org = await organizations.create_organization(session, slug=args.slug, name=args.name)
            print(f"created organization {org.slug} (id {org.id})", file=sys.stderr)

    return _run_reporting_errors(run)


def cmd_token_create(args: argparse.Namespace) -> int:
    from osiris.app import accounts, db
    from osiris.app.models import Role
    from osiris.server import start_runtime

    async def run() -> None:
        async with start_runtime(_settings(args)) as runtime, db.transaction(runtime.sessions) as session:
            user = await accounts.find_user(session, args.name)
            if user is None:
                org = await accounts.default_org(session)
                user = await accounts.create_user(session, org_id=org.id, username=args.name, role=Role.AGENT)
            expires_at = accounts.token_expiry(expires_in_days=args.expires_in_days)
            new = await accounts.create_token(
                session, user=user, name=args.token_name or f"{args.name}-cli", expires_at=expires_at
            )
            secret = new.secret
        print(secret)  # alone on stdout, so `TOKEN=$(osiris token create bot)` works

    return _run_reporting_errors(run)


def cmd_client_create(args: argparse.Namespace) -> int:
    from osiris.app import accounts, db, oauth
    from osiris.app.models import Role
    from osiris.server import start_runtime

    async def run() -> None:
        settings = _settings(args)
        async with start_runtime(settings) as runtime, db.transaction(runtime.sessions) as session:
            user = await accounts.find_user(session, args.name)
            if user is None:
                org = await accounts.default_org(session)
                user = await accounts.create_user(session, org_id=org.id, username=args.name, role=Role.AGENT)
            new = await oauth.create_client(
                session, user=user, name=args.client_name or f"{args.name}-cli", scopes=args.scope
            )
            client_id, secret, scopes = new.client.client_id, new.secret, new.client.scopes
        base = oauth.issuer(settings.server.public_url)
        print(
            f"client for {args.name}: scopes {' '.join(scopes)}; token endpoint {base}{oauth.TOKEN_PATH}; "
            f"resource {oauth.mcp_audience(base)} (MCP) or {oauth.api_audience(base)} (REST). "
            "The secret is shown only now.",
            file=sys.stderr,
        )
        # alone on stdout, in the form of an env file: `osiris client create bot >> agent.env`
        print(f"OSIRIS_CLIENT_ID={client_id}\nOSIRIS_CLIENT_SECRET={secret}")

    return _run_reporting_errors(run)


def cmd_client_list(args: argparse.Namespace) -> int:
    from osiris.app import db, oauth
    from osiris.server import start_runtime

    async def run() -> None:
        async with start_runtime(_settings(args)) as runtime, db.transaction(runtime.sessions) as session:
            clients = await oauth.list_clients(session, None)
        _table(  # never a secret: it was shown once and only its hash is kept
            ("CLIENT ID", "USER", "NAME", "SCOPES", "CREATED", "LAST USED", "REVOKED"),
            [
                (
                    c.client_id,
                    user,
                    c.name,
                    " ".join(c.scopes),
                    _when(c.created_at),
                    _when(c.last_used_at),
                    _when(c.revoked_at),
                )
                for c, user in clients
            ],
        )

    return _run_reporting_errors(run)


def cmd_client_revoke(args: argparse.Namespace) -> int:
    from osiris.app import db, oauth
    from osiris.server import start_runtime

    async def run() -> None:
        async with start_runtime(_settings(args)) as runtime, db.transaction(runtime.sessions) as session:
            # NOTIFY on commit: every server drops its access tokens and closes their live streams
            client = await oauth.find_client(session, args.client_id, org_id=None)
            await oauth.revoke_client(session, client)
        print(f"client {args.client_id} revoked; its access tokens no longer work", file=sys.stderr)

    return _run_reporting_errors(run)


def cmd_telegram_set_webhook(args: argparse.Namespace) -> int:
    from osiris.ingest import telegram

    try:
        url = asyncio.run(telegram.register_webhook(_settings(args)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the Bot API's refusal, shown without the token
        print(f"error: the Bot API refused: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"telegram webhook set to {url}", file=sys.stderr)
    return 0


def _run_reporting_errors(run) -> int:  # type: ignore[no-untyped-def]
    from osiris.app.errors import OsirisError

    try:
        asyncio.run(run())
    except OsirisError as exc:
        print(f"error ({exc.code}): {exc.detail}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="osiris", description="OSIRIS: a human-in-the-loop gate for AI agents")
    p.add_argument("--data-dir", type=Path, help="data folder for the embedded default (OSIRIS_DATA_DIR)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="API, portal, MCP, webhooks and an in-process worker",
        description="Serve the API, portal, MCP (/mcp) and webhooks, with a job worker and the lease "
        "sweeper in-process (OSIRIS_RUN_WORKER). Migrates first. Without DATABASE_URL it starts its own "
        "PostgreSQL under the data dir; on an empty database it creates the user `admin` and, unless "
        "OSIRIS_ADMIN_PASSWORD is set, stores a generated password in <data dir>/admin-password.",
    )
    serve.add_argument("--host", help="address to listen on (default OSIRIS_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default OSIRIS_PORT, else 8000)")
    serve.add_argument(
        "--data-dir",
        type=Path,
        help="embedded PostgreSQL, local repositories, generated keys (default OSIRIS_DATA_DIR, else ./.osiris)",
    )
    serve.add_argument(
        "--workers", type=int, help="server processes on one port (default OSIRIS_WORKERS, else 1)"
    )
    serve.set_defaults(fn=cmd_serve)

    worker = sub.add_parser("worker", help="run side-effect jobs and the lease sweeper")
    worker.add_argument("--drain", action="store_true", help="run queued jobs, then exit")
    worker.add_argument(
        "--jobs",
        metavar="KINDS",
        help="only these job kinds, comma-separated, e.g. run_checks (default OSIRIS_WORKER_JOBS, else all)",
    )
    worker.add_argument(
        "--skip-jobs",
        metavar="KINDS",
        help="every job kind but these, e.g. run_checks (default OSIRIS_WORKER_SKIP_JOBS, else none)",
    )
    worker.set_defaults(fn=cmd_worker)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(fn=cmd_migrate)
    database = sub.add_parser("db", help="database roles").add_subparsers(dest="db_command", required=True)
    gr = database.add_parser(
        "grant-checks-role",
        help="migrate, then give an existing PostgreSQL role exactly what the checks worker needs",
        description="Migrates first, then revokes every privilege ROLE has on OSIRIS's tables and "
        "grants only what `osiris worker --jobs run_checks` does: read tasks, versions and check runs, "
        "write a check run's outcome, take its own jobs (row-level security hides the others). Run it "
        "as the role that owns the tables, after every upgrade (the chart's migration Job does).",
    )
    gr.add_argument("role", help="an existing role, not a superuser nor a member of the tables' owner")
    gr.set_defaults(fn=cmd_db_grant_checks_role)
    sub.add_parser(
        "mcp", help="stdio MCP server for desktop clients (OSIRIS_URL, OSIRIS_TOKEN)"
    ).set_defaults(fn=cmd_mcp)

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    uc = user.add_parser("create", help="create a user")
    uc.add_argument("name")
    uc.add_argument("--role", choices=["admin", "reviewer", "agent"], required=True)
    uc.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )
    uc.add_argument("--github-login")
    uc.add_argument("--skill", action="append", default=[], help="a skill for routing (repeatable)")
    uc.add_argument("--org", help="the organization's slug (default: the default organization)")
    uc.add_argument(
        "--superuser", action="store_true", help="the operator: manages organizations (admins only)"
    )
    uc.set_defaults(fn=cmd_user_create)
    up = user.add_parser("set-password", help="set a person's password (read from stdin, never argv)")
    up.add_argument("name")
    up.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (implied when stdin is not a terminal)",
    )
    up.set_defaults(fn=cmd_user_set_password)
    user.add_parser("list", help="every user, in every organization").set_defaults(fn=cmd_user_list)

    org = sub.add_parser("org", help="manage organizations").add_subparsers(dest="org_command", required=True)
    oc = org.add_parser("create", help="create an organization; then `user create … --org SLUG --role admin`")
    oc.add_argument("slug", help="lower-case letters, digits and '-'")
    oc.add_argument("--name", help="a display name (default: the slug)")
    oc.set_defaults(fn=cmd_org_create)

    token = sub.add_parser("token", help="manage API tokens").add_subparsers(
        dest="token_command", required=True
    )
    tc = token.add_parser("create", help="create a token (and the agent user if it does not exist)")
    tc.add_argument("name", help="the user the token acts as")
    tc.add_argument("--token-name", help="a label for the token")
    tc.add_argument(
        "--expires-in-days", type=int, default=None, help="the token stops working after this many days"
    )
    tc.set_defaults(fn=cmd_token_create)
    tl = token.add_parser(
        "list", help="tokens (never their secrets): id, user, name, prefix, use, revocation"
    )
    tl.add_argument("--user", help="only this user's tokens")
    tl.set_defaults(fn=cmd_token_list)
    tr = token.add_parser("revoke", help="revoke a token: refused at once, its live connections closed")
    tr.add_argument("id", type=int, help="the token's id (`osiris token list`)")
    tr.set_defaults(fn=cmd_token_revoke)

    client = sub.add_parser(
        "client", help="manage agents' OAuth clients (the client credentials grant)"
    ).add_subparsers(dest="client_command", required=True)
    cc = client.add_parser(
        "create", help="register a client for an agent (created if missing); prints its id and secret once"
    )
    cc.add_argument("name", help="the agent user the client acts as (people cannot have one)")
    cc.add_argument(
        "--scope",
        action="append",
        help="a scope to grant (repeat, or space-separated); default: the agent's work loop "
        "(tasks:read tasks:claim tasks:submit tasks:message repos:read); also tasks:create",
    )
    cc.add_argument("--client-name", help="a label for the client")
    cc.set_defaults(fn=cmd_client_create)
    client.add_parser("list", help="clients (never their secrets)").set_defaults(fn=cmd_client_list)
    cr = client.add_parser("revoke", help="revoke a client: its access tokens stop at once")
    cr.add_argument("client_id", help="the client's id (`osiris client list`)")
    cr.set_defaults(fn=cmd_client_revoke)
    telegram = sub.add_parser("telegram", help="the Telegram bot").add_subparsers(
        dest="telegram_command", required=True
    )
    telegram.add_parser(
        "set-webhook",
        help="register OSIRIS_PUBLIC_URL/api/v1/webhooks/telegram and its secret with the Bot API",
    ).set_defaults(fn=cmd_telegram_set_webhook)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
