"""Helpers more than one test folder uses (a folder's own stay in it: its conftest.py and *_helpers.py).

- servers: a real OSIRIS on a free port in a thread (`LiveServer`), the MCP client over HTTP to it
- fake_github, openapi_check: GitHub at the HTTP boundary, checked against its OpenAPI description
- github_harness: the `github` fixture (the app wired to the fake) and a task's steps on it
- local_git: the `host` and `repo_name` fixtures of the local git host
- jobs: running the queued jobs as a worker would (`drain`, `drain_kinds`)
- rest: a task's steps over the REST API (`claimed_task`, `submitted`, `task_view`)
- settings: the settings every in-process test app starts from (`make_settings`)
- cli: the `osiris` command run as an operator runs it (`osiris_cli`)
- channel_fakes, fixtures/: Twilio, Slack, Telegram and SMTP fakes, and the providers' own payloads
- portal_helpers: signing in to the portal, its CSRF tokens and forms, its WebSockets

What the benchmarks and the tests both need is in `bench._server` and shared rather than copied:
`running_server` (a real `osiris serve`), `serving` (any command until it answers), `free_port`, and
`create_database` / `drop_database` (a scratch database on the run's PostgreSQL server).
"""
