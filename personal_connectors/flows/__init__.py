"""The OAuth authorization-code flow: authorize, callback, complete-oauth (SPEC §3.1)."""
