"""Connections made with credentials other than an authorization code (SPEC §10)."""
