"""OSIRIS's tests, a package: a folder per package of `osiris` (app, github_bridge, ingest, mcp, portal;
root for the composition root, osiris/server.py and osiris/cli.py), the cross-cutting suites (security,
reliability, deploy), and `tests.support`, the helpers more than one folder uses.

Because this folder and each below it are packages, pytest puts the repository's root on sys.path
(rootdir-relative `prepend` imports): a test module imports a helper by its full name
(`from tests.support.servers import LiveServer`) or, inside its own folder, relatively
(`from .mcp_helpers import ok`); never from another test module, and never through sys.path.
"""
