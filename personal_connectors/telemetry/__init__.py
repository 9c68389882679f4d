"""Metrics, traces and the multiprocess folder of ``serve`` (SPEC §12); logs are ``logs``."""
