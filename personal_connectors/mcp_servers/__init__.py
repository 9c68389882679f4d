"""MCP servers reached with a connection's credentials (SPEC §11): their tools, their health."""
