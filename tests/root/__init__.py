"""Tests of the composition root, osiris/server.py and osiris/cli.py: the `osiris` command (serve with
several workers, worker, user and token) run as a process, the way an operator and `make run` use it."""
