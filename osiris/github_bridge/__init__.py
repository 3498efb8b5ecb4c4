"""The code-host bridge: every submission becomes a branch and a change request; approval merges.

Two hosts behind one port (`port.CodeHost`): the local git host, the embedded default, and GitHub.
`extension.py` picks one from the settings. Keep this module free of imports: the core imports
`osiris.github_bridge.port` and must not pull a host in with it.
"""
