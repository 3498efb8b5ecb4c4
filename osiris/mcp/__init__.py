"""The MCP gateway: any agent can take, do and hand in work over the Model Context Protocol.

`server.build_mcp_server` builds one tool surface over a `Gateway`: in the OSIRIS process the gateway
calls the lifecycle service directly (streamable HTTP at `/mcp`, see `extension`); in `osiris mcp` it
calls a running OSIRIS over its REST API (stdio, see `stdio`). Same tools, same names, same schemas.
"""
