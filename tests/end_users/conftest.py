"""Fixtures the end-user tests share with other areas."""

from tests.webhooks.conftest import receiver  # noqa: F401 (the webhook receiver fixture)
