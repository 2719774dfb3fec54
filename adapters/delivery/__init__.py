"""Where finished documents go: HTTP callbacks (the folder delivery is a local atomic write, server.workflows)."""
