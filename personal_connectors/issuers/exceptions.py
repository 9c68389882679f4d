"""Errors of the trusted-issuers domain, in the service's error vocabulary (SPEC §2)."""

from __future__ import annotations

from personal_connectors.exceptions import Conflict, ResourceNotFound


class TrustedIssuerNotFound(ResourceNotFound):
    """Unknown, or another organization's: the two are not told apart."""

    message = "The trusted issuer was not found."


class IssuerAlreadyTrusted(Conflict):
    message = "The organization already trusts this issuer; delete it first to change it."


class TooManyIssuers(Conflict):
    message = "The organization trusts as many issuers as it may."
