"""Every table of the service; importing this module registers them all on ``Base.metadata``."""

from personal_connectors.models.base import Base, new_id, utcnow
from personal_connectors.models.connection import Connection, ConnectionEvent, ConnectionStatus
from personal_connectors.models.flow import Flow, FlowCompletion, FlowStatus
from personal_connectors.models.identity import (
    APIKey,
    APIKeyStatus,
    Membership,
    Organization,
    Role,
    User,
)
from personal_connectors.models.oauth_app import OAuthApp

__all__ = [
    "APIKey",
    "APIKeyStatus",
    "Base",
    "Connection",
    "ConnectionEvent",
    "ConnectionStatus",
    "Flow",
    "FlowCompletion",
    "FlowStatus",
    "Membership",
    "OAuthApp",
    "Organization",
    "Role",
    "User",
    "new_id",
    "utcnow",
]
