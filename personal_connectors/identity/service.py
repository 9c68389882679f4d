"""Identity logic: creating organizations, users and API keys; authenticating callers; the end
users a service key acts for (SPEC §8)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.crypto import hashing
from personal_connectors.crypto.aead import Sealer
from personal_connectors.exceptions import (
    APIKeyDeactivated,
    APIKeyExpired,
    APIKeyPaused,
    AuthenticationRequired,
    InsufficientPermissions,
    InvalidAPIKey,
    OrganizationAccessDenied,
    ValidationFailed,
)
from personal_connectors.identity import pct
from personal_connectors.identity.exceptions import IdentityError
from personal_connectors.identity.pct import ExchangedToken
from personal_connectors.identity.records import KeyLike
from personal_connectors.identity.repository import IdentityRepository
from personal_connectors.models import (
    ID_MAX_LENGTH,
    APIKey,
    APIKeyStatus,
    EndUser,
    KeyKind,
    Membership,
    Organization,
    Role,
    User,
    new_id,
    utcnow,
)

API_KEY_PREFIX = "ak_"
API_KEY_RANDOM_CHARS = 40

# The platform's id for an end user (SPEC §8): 1-128 of these characters, not only dots.
END_USER_CHARACTERS = "A-Za-z0-9._:@|-"  # as a regular expression's character class
END_USER_ID_PATTERN = re.compile(f"[{END_USER_CHARACTERS}]{{1,128}}")
END_USER_ID_RULE = (
    "end_user_id must be 1-128 characters of A-Z a-z 0-9 . _ : @ | - and not only dots."
)
END_USER_NEEDS_SERVICE_KEY = (
    "Only a service key acts for end users; a user key acts for its own user, "
    "so leave out end_user_id."
)
# The user id of a service key that names no end user, or one that does not exist yet: no user
# row has it, so such a caller owns (and finds) nothing.
NO_USER = ""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an API key and the user it acts as. For a service key that is
    the internal user of the end user the request names (``NO_USER`` until one is named)."""

    user_id: str
    api_key_id: str
    kind: KeyKind = KeyKind.USER
    organization_id: str | None = None  # a service or exchange key's organization
    # A ``pct_`` token's end user (identity.pct): the only one it acts for.
    bound_end_user_id: str | None = None

    def acting_as(self, user_id: str) -> Principal:
        """This caller acting as another (internal) user: an end user's."""
        return Principal(
            user_id, self.api_key_id, self.kind, self.organization_id, self.bound_end_user_id
        )

    @property
    def is_service(self) -> bool:
        return self.kind == KeyKind.SERVICE


@dataclass(frozen=True)
class OrgAccess:
    """A principal acting inside an organization it belongs to; for a service key, acting for
    the end user ``end_user_id`` (None: for none in particular, the organization-wide list)."""

    principal: Principal
    organization_id: str
    role: Role
    end_user_id: str | None = None

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    @property
    def all_end_users(self) -> bool:
        """A service key naming no end user: it sees every end user's connections (GET /)."""
        return self.principal.is_service and self.end_user_id is None

    @property
    def is_admin(self) -> bool:
        """An owner's or admin's user key (a service key never is)."""
        return not self.principal.is_service and self.role in (Role.OWNER, Role.ADMIN)

    def require_admin(self) -> None:
        if self.principal.is_service:
            raise InsufficientPermissions(SERVICE_KEY_NOT_ADMIN)
        if not self.is_admin:
            raise InsufficientPermissions("This action needs the admin or owner role.")


FOREIGN_SERVICE_KEY = "The service key belongs to another organization."
SERVICE_KEY_NOT_ADMIN = (
    "A service key acts for end users only; the organization's settings (apps, webhooks, "
    "API keys) need a user key of an admin or owner."
)


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
        """A user key: it acts as ``user_id``."""
        if await self.repository.get_user(user_id) is None:
            raise IdentityError(f"no user {user_id}")
        return await self._issue_key(KeyKind.USER, name, expires_in_days, user_id=user_id)

    async def create_organization_key(
        self,
        organization_id: str,
        kind: KeyKind,
        *,
        name: str | None = None,
        expires_in_days: int | None = None,
    ) -> IssuedAPIKey:
        """A service or exchange key of the organization (SPEC §8)."""
        if kind == KeyKind.USER:
            raise IdentityError("a user key belongs to a user, not to an organization")
        if await self.repository.get_organization(organization_id) is None:
            raise IdentityError(f"no organization {organization_id}")
        return await self._issue_key(kind, name, expires_in_days, organization_id=organization_id)

    async def _issue_key(
        self,
        kind: KeyKind,
        name: str | None,
        expires_in_days: int | None,
        *,
        user_id: str | None = None,
        organization_id: str | None = None,
    ) -> IssuedAPIKey:
        if expires_in_days is not None and expires_in_days <= 0:
            raise IdentityError("--expires-in-days must be positive")
        plaintext = API_KEY_PREFIX + hashing.random_alphanumeric(API_KEY_RANDOM_CHARS)
        expires_at: datetime | None = None
        if expires_in_days is not None:
            expires_at = utcnow() + timedelta(days=expires_in_days)
        key = APIKey(
            id=new_id("key"),
            kind=kind,
            user_id=user_id,
            organization_id=organization_id,
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

    async def authenticate_exchanged(self, sealer: Sealer, presented: str) -> Principal:
        """The caller a presented ``pct_`` token stands for (401 unless genuine and current)."""
        try:
            token = pct.read(sealer, presented)
        except pct.InvalidExchangedToken as exc:
            raise InvalidAPIKey(str(exc)) from None
        return await self.exchanged_principal(token)

    async def exchanged_principal(self, token: ExchangedToken) -> Principal:
        """The caller a ``pct_`` token stands for: the end user it was exchanged for, through
        the key that exchanged it, which must still be usable (deleting or pausing it ends its
        tokens at once)."""
        key = await self.repository.get_api_key(token.api_key_id)
        if key is None or key.organization_id != token.organization_id:
            raise InvalidAPIKey("The token's key no longer exists; exchange a new token.")
        check_key_state(key)
        return Principal(
            user_id=NO_USER,
            api_key_id=key.id,
            kind=KeyKind.SERVICE,
            organization_id=key.organization_id,
            bound_end_user_id=token.end_user_id,
        )

    async def organization_access(
        self,
        principal: Principal,
        organization_id: str,
        end_user_id: str | None = None,
        *,
        end_user_required: bool = True,
    ) -> OrgAccess:
        """Membership check; a missing org and a foreign org are indistinguishable (SPEC §2).

        A service key acts for ``end_user_id`` (see ``access_of``); an unknown end user owns
        nothing (``NO_USER``) until a write creates it (``acting_end_user``)."""
        if principal.is_service:
            end_user_id = bound_end_user(principal, end_user_id)
            end_user: EndUser | None = None
            if (
                organization_id == principal.organization_id
                and end_user_id is not None
                and valid_end_user_id(end_user_id)
            ):
                end_user = await self.repository.get_end_user(organization_id, end_user_id)
            access = access_of(
                principal,
                organization_id,
                None,
                end_user_id,
                end_user.user_id if end_user else None,
                end_user_required=end_user_required,
            )
            return access
        membership: Membership | None = None
        if len(organization_id) <= ID_MAX_LENGTH:
            membership = await self.repository.get_membership(organization_id, principal.user_id)
        role = membership.role if membership else None
        return access_of(principal, organization_id, role, end_user_id)

    async def acting_end_user(self, access: OrgAccess) -> OrgAccess:
        """``access`` with its end user created if the request named a new one: what a write
        (a flow, a connect session, credentials) calls once its input is valid, so a refused
        request creates nothing. Commits when it creates."""
        if access.end_user_id is None or access.user_id != NO_USER:
            return access
        end_user = await self.ensure_end_user(access.organization_id, access.end_user_id)
        return with_end_user(access, end_user.user_id)

    async def ensure_end_user(self, organization_id: str, external_id: str) -> EndUser:
        """The organization's end user ``external_id``, created with its internal user (a
        member with role ``end_user``) if new. Commits."""
        for attempt in (1, 2):
            found = await self.repository.get_end_user(organization_id, external_id)
            if found is not None:
                return found
            user = User(id=new_id("user"))
            end_user = EndUser(
                id=new_id("eu"),
                organization_id=organization_id,
                external_id=external_id,
                user_id=user.id,
                tags={},
            )
            membership = Membership(
                id=new_id("mem"),
                organization_id=organization_id,
                user_id=user.id,
                role=Role.END_USER,
            )
            self.repository.add(user)
            await self.session.flush()  # the end user and membership rows reference it
            self.repository.add(end_user, membership)
            try:
                await self.session.commit()
                return end_user
            except IntegrityError:
                # Two first writes for one end user raced; the other one created it.
                await self.session.rollback()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


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
    row found by ``key_hash``, the presented key's ``presented_key_hash``. An exchange key is
    refused here: it can only call the token exchange (``issuers.exchange``)."""
    if key is None or not hashing.same_digest(key_hash, key.key_hash):
        raise InvalidAPIKey("The API key is not valid.")
    check_key_state(key)
    if key.kind == KeyKind.EXCHANGE:
        raise InsufficientPermissions(
            "An exchange key can only call POST /v1/personal-connectors/oauth/token; "
            "use a service key or a user key here."
        )
    return Principal(
        user_id=key.user_id or NO_USER,
        api_key_id=key.id,
        kind=KeyKind(key.kind),
        organization_id=key.organization_id,
    )


def check_key_state(key: KeyLike) -> None:
    """Refuse a paused, deactivated or expired key."""
    if key.status == APIKeyStatus.DEACTIVATED:
        raise APIKeyDeactivated("The API key was deactivated.")
    if key.status == APIKeyStatus.PAUSED:
        raise APIKeyPaused("The API key is paused.")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise APIKeyExpired("The API key has expired.")


def bound_end_user(principal: Principal, end_user_id: str | None) -> str | None:
    """The end user a service caller acts for: a ``pct_`` token's own, which a request may
    repeat but not change."""
    bound = principal.bound_end_user_id
    if bound is None:
        return end_user_id
    if end_user_id is not None and end_user_id != bound:
        raise InsufficientPermissions("The token acts for another end user; leave out end_user_id.")
    return bound


def valid_end_user_id(value: str) -> bool:
    return END_USER_ID_PATTERN.fullmatch(value) is not None and value.strip(".") != ""


def access_of(
    principal: Principal,
    organization_id: str,
    role: str | None,
    end_user_id: str | None = None,
    end_user_user_id: str | None = None,
    *,
    end_user_required: bool = True,
) -> OrgAccess:
    """``principal`` in an organization, or the error that refuses it, in this order.

    A user key: its membership has ``role`` (None: not a member); naming an end user is
    refused. A service key: only in its own organization; it must name a valid end user
    (unless not ``end_user_required``: the organization-wide list), whose internal user it then
    acts as (``end_user_user_id``; None: the end user does not exist yet, ``NO_USER``).
    """
    if principal.is_service:
        if organization_id != principal.organization_id:
            raise OrganizationAccessDenied(FOREIGN_SERVICE_KEY)
        if end_user_id is None:
            if end_user_required:
                raise ValidationFailed.for_fields(
                    "A service key must name the end user it acts for: add the query "
                    "parameter end_user_id (the platform's id for its user).",
                    "end_user_id",
                )
            return OrgAccess(principal, organization_id, Role.END_USER)
        if not valid_end_user_id(end_user_id):
            raise ValidationFailed.for_fields(END_USER_ID_RULE, "end_user_id")
        acting = principal.acting_as(end_user_user_id or NO_USER)
        return OrgAccess(acting, organization_id, Role.END_USER, end_user_id)
    if role is None:
        raise OrganizationAccessDenied("The caller is not a member of this organization.")
    if end_user_id is not None:
        raise InsufficientPermissions(END_USER_NEEDS_SERVICE_KEY)
    return OrgAccess(principal, organization_id, Role(role))


def with_end_user(access: OrgAccess, user_id: str) -> OrgAccess:
    """``access`` acting as the end user's internal user ``user_id`` (just created)."""
    return OrgAccess(
        access.principal.acting_as(user_id), access.organization_id, access.role, access.end_user_id
    )
