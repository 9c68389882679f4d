"""Identity logic: creating organizations, users and API keys; authenticating callers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.crypto import hashing
from personal_connectors.exceptions import (
    APIKeyDeactivated,
    APIKeyExpired,
    APIKeyPaused,
    AuthenticationRequired,
    InsufficientPermissions,
    InvalidAPIKey,
    OrganizationAccessDenied,
)
from personal_connectors.identity.exceptions import IdentityError
from personal_connectors.identity.records import KeyLike
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.models import (
    ID_MAX_LENGTH,
    APIKey,
    APIKeyStatus,
    Membership,
    Organization,
    Role,
    User,
    new_id,
    utcnow,
)

API_KEY_PREFIX = "ak_"
API_KEY_RANDOM_CHARS = 40


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the user an API key belongs to."""

    user_id: str
    api_key_id: str


@dataclass(frozen=True)
class OrgAccess:
    """A principal acting inside an organization it belongs to."""

    principal: Principal
    organization_id: str
    role: Role

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    def require_admin(self) -> None:
        if self.role not in (Role.OWNER, Role.ADMIN):
            raise InsufficientPermissions("This action needs the admin or owner role.")


@dataclass(frozen=True)
class IssuedAPIKey:
    key: APIKey
    plaintext: str


class IdentityService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = IdentityRepository(session)

    async def create_organization(self, name: str) -> Organization:
        name = name.strip()
        if not name:
            raise IdentityError("the organization name must not be empty")
        organization = Organization(id=new_id("org"), name=name)
        self.repository.add(organization)
        await self.session.commit()
        return organization

    async def create_user(
        self, email: str, organization_id: str, *, role: Role = Role.MEMBER, name: str | None = None
    ) -> User:
        """Create the user (or reuse one with that email) and make them a member of the org."""
        email = email.strip().lower()
        if "@" not in email or len(email) > 320:
            raise IdentityError(f"not an email address: {email!r}")
        if await self.repository.get_organization(organization_id) is None:
            raise IdentityError(f"no organization {organization_id}")
        user = await self.repository.get_user_by_email(email)
        if user is None:
            user = User(id=new_id("user"), email=email, name=name)
            self.repository.add(user)
            await self.session.flush()  # the membership row references it
        elif await self.repository.get_membership(organization_id, user.id) is not None:
            raise IdentityError(f"{email} is already a member of {organization_id}")
        self.repository.add(
            Membership(
                id=new_id("mem"), organization_id=organization_id, user_id=user.id, role=role
            )
        )
        await self.session.commit()
        return user

    async def create_api_key(
        self, user_id: str, *, name: str | None = None, expires_in_days: int | None = None
    ) -> IssuedAPIKey:
        if await self.repository.get_user(user_id) is None:
            raise IdentityError(f"no user {user_id}")
        if expires_in_days is not None and expires_in_days <= 0:
            raise IdentityError("--expires-in-days must be positive")
        plaintext = API_KEY_PREFIX + hashing.random_alphanumeric(API_KEY_RANDOM_CHARS)
        expires_at: datetime | None = None
        if expires_in_days is not None:
            expires_at = utcnow() + timedelta(days=expires_in_days)
        key = APIKey(
            id=new_id("key"),
            user_id=user_id,
            name=name,
            key_hash=hashing.digest(plaintext),
            prefix=plaintext[:8],
            status=APIKeyStatus.ACTIVE,
            expires_at=expires_at,
        )
        self.repository.add(key)
        await self.session.commit()
        return IssuedAPIKey(key, plaintext)

    async def set_api_key_status(self, key_id: str, status: APIKeyStatus) -> APIKey:
        key = await self.repository.get_api_key(key_id)
        if key is None:
            raise IdentityError(f"no API key {key_id}")
        key.status = status
        await self.session.commit()
        return key

    async def authenticate(self, presented: str | None) -> Principal:
        key_hash = presented_key_hash(presented)
        return principal_of(key_hash, await self.repository.get_api_key_by_hash(key_hash))

    async def organization_access(self, principal: Principal, organization_id: str) -> OrgAccess:
        """Membership check; a missing org and a foreign org are indistinguishable (SPEC §2)."""
        membership: Membership | None = None
        if len(organization_id) <= ID_MAX_LENGTH:
            membership = await self.repository.get_membership(organization_id, principal.user_id)
        return access_of(principal, organization_id, membership.role if membership else None)


# The checks of authenticate and organization_access as plain functions, so the token hot path
# (tokens.repository), which reads the key, the membership and the connection in one query,
# applies exactly the same rules in the same order.


def presented_key_hash(presented: str | None) -> str:
    """The digest to look a presented key up by; refuses absent and malformed keys first."""
    if not presented:
        raise AuthenticationRequired("No API key was presented.")
    if not presented.startswith(API_KEY_PREFIX) or len(presented) > 200:
        raise InvalidAPIKey("The API key is not valid.")
    return hashing.digest(presented)


def principal_of(key_hash: str, key: KeyLike | None) -> Principal:
    """The caller an API key row stands for, or the error its state calls for: ``key`` is the
    row found by ``key_hash``, the presented key's ``presented_key_hash``."""
    if key is None or not hashing.same_digest(key_hash, key.key_hash):
        raise InvalidAPIKey("The API key is not valid.")
    if key.status == APIKeyStatus.DEACTIVATED:
        raise APIKeyDeactivated("The API key was deactivated.")
    if key.status == APIKeyStatus.PAUSED:
        raise APIKeyPaused("The API key is paused.")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise APIKeyExpired("The API key has expired.")
    return Principal(user_id=key.user_id, api_key_id=key.id)


def access_of(principal: Principal, organization_id: str, role: str | None) -> OrgAccess:
    """``principal`` in an organization where its membership has ``role`` (None: not a member)."""
    if role is None:
        raise OrganizationAccessDenied("The caller is not a member of this organization.")
    return OrgAccess(principal, organization_id, Role(role))
