"""Errors of the webhooks domain, in the service's error vocabulary (SPEC §2)."""

from __future__ import annotations

from personal_connectors.exceptions import Conflict, ResourceNotFound


class WebhookNotFound(ResourceNotFound):
    """Unknown, or another organization's: the two are not told apart."""

    message = "The webhook endpoint was not found."


class TooManyWebhooks(Conflict):
    message = "The organization has as many webhook endpoints as it may have."
