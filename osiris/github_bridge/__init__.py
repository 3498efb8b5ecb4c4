"""The code-host bridge: every submission becomes a branch and a change request; approval merges.

Two hosts behind one port (`osiris.app.ports.CodeHost`): the local git host, the embedded default,
and GitHub. `extension.py` picks one from the settings. The core never imports this package; the
composition root (`osiris.server`) loads it as an extension.
"""
