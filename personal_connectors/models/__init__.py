"""Every table of the service; importing this module registers them all on ``Base.metadata``."""

from personal_connectors.models.base import (
    ID_MAX_LENGTH,
    Base,
    new_id,
    new_time_ordered_ids,
    utcnow,
)
from personal_connectors.models.connect_session import ConnectSession
from personal_connectors.models.connection import (
    NO_AUTH_MODE,
    OAUTH2_MODE,
    Connection,
    ConnectionEvent,
    ConnectionStatus,
)
from personal_connectors.models.flow import Flow, FlowCompletion, FlowGrant, FlowStatus
from personal_connectors.models.identity import (
    APIKey,
    APIKeyStatus,
    EndUser,
    KeyKind,
    Membership,
    Organization,
    Role,
    User,
)
from personal_connectors.models.mcp_registration import McpClientRegistration
from personal_connectors.models.oauth_app import OAuthApp
from personal_connectors.models.trusted_issuer import TrustedIssuer
from personal_connectors.models.webhook import DeliveryStatus, WebhookDelivery, WebhookEndpoint

__all__ = [
    "ID_MAX_LENGTH",
    "NO_AUTH_MODE",
    "OAUTH2_MODE",
    "APIKey",
    "APIKeyStatus",
    "Base",
    "ConnectSession",
    "Connection",
    "ConnectionEvent",
    "ConnectionStatus",
    "DeliveryStatus",
    "EndUser",
    "Flow",
    "FlowCompletion",
    "FlowGrant",
    "FlowStatus",
    "KeyKind",
    "McpClientRegistration",
    "Membership",
    "OAuthApp",
    "Organization",
    "Role",
    "TrustedIssuer",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "new_id",
    "new_time_ordered_ids",
    "utcnow",
]
