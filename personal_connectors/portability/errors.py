"""Failures of a whole import or export (a single bad line is reported, not raised)."""

from __future__ import annotations


class PortabilityError(RuntimeError):
    """The file cannot be read or written as a whole; the message is safe to show an operator."""


class EnvelopeError(PortabilityError):
    """An encrypted export that cannot be opened: wrong passphrase, altered or not an export."""
