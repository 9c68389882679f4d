"""Liveness and readiness probes (SPEC §3.4)."""
