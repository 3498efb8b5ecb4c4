"""The supervisor portal: server-rendered pages, a small live-update script, and the WebSockets."""
