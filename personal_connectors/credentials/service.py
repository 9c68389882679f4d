"""Connecting an account with credentials other than an authorization code (SPEC §10).

A submission is checked in three steps before anything is stored: its fields against the
catalog entry (names, presence, patterns, a private key that loads); a token minted with them
for the minting modes; the entry's ``test_request`` made with them (401 or 403:
``CREDENTIALS_REJECTED``). The account is then read from the entry's ``userinfo`` call or, when
it has none, named by a digest of the fields (``account_digest``), and the connection created,
or updated when the same account was connected before. Values are never logged nor put in a
message: errors name fields only.

``credential_values`` is what a caller of the provider's API (the proxy) fills ``api_auth``
with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass

import httpx
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from personal_connectors.config import API_PREFIX
from personal_connectors.connections.checks import SUCCESS_STATUSES, send_with_credentials
from personal_connectors.connections.repository import ConnectionRepository
from personal_connectors.connections.service import ConnectionService
from personal_connectors.events.repository import EventRepository
from personal_connectors.events.types import EventType
from personal_connectors.exceptions import (
    CredentialsRejected,
    ProviderError,
    ProviderUnavailable,
    UnknownConnectorType,
    ValidationFailed,
)
from personal_connectors.identity.service import IdentityService, OrgAccess
from personal_connectors.models import Connection, ConnectionStatus, new_id, utcnow
from personal_connectors.oauth.client import TokenGrant
from personal_connectors.oauth.errors import (
    DestinationNotAllowed,
    ProviderBadAnswer,
    ProviderRejected,
    ProviderUnreachable,
)
from personal_connectors.oauth.identity import AccountIdentity, identity_from_document
from personal_connectors.oauth.rfc7523 import InvalidPrivateKey, signing_key
from personal_connectors.outbound.guard import DestinationRefused
from personal_connectors.providers.schema import (
    CREDENTIALS_MODES,
    MINTING_MODES,
    IdentityMapping,
    ProviderEntry,
    TestRequest,
)
from personal_connectors.providers.templating import connection_params
from personal_connectors.runtime import Runtime
from personal_connectors.tokens.minting import mint
from personal_connectors.tokens.values import credential_values as credential_values
from personal_connectors.tokens.vault import TokenVault

logger = logging.getLogger(__name__)

USE_CREDENTIALS = (
    f"{{key}} connects with credentials ({{mode}}), not an OAuth flow: POST {API_PREFIX}"
    "/credentials with its fields (GET /available/{key} names them)."
)
USE_AUTHORIZE = (
    f"{{key}} connects through OAuth: start a flow with POST {API_PREFIX}/authorize instead."
)
# Prefix of an account id made from the credentials themselves (no identity call).
DIGEST_PREFIX = "cred_"


def oauth_only(entry: ProviderEntry) -> None:
    """400 for an OAuth-only route (``/authorize``, connect sessions' OAuth start) asked about
    an entry that connects with credentials."""
    if entry.auth_mode in CREDENTIALS_MODES:
        raise ValidationFailed.for_fields(
            USE_CREDENTIALS.format(key=entry.key, mode=entry.auth_mode), "connector_type"
        )


def check_fields(entry: ProviderEntry, given: Mapping[str, str]) -> dict[str, str]:
    """The submitted fields, as the entry declares them: every declared field present and
    non-empty, matching its pattern, nothing else. One 400 names every bad field (values never
    appear); a ``jwt_bearer`` private key must load for the entry's algorithm."""
    declared = {field.name: field for field in entry.credentials}
    unknown = sorted(set(given) - set(declared))
    missing = [name for name in declared if not given.get(name)]
    mismatched = [
        name
        for name, field in declared.items()
        if given.get(name) and field.pattern and not re.fullmatch(field.pattern, given[name])
    ]
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if mismatched:
        problems.append(f"not in the expected format: {', '.join(mismatched)}")
    if unknown:
        problems.append(f"not fields of {entry.key}: {', '.join(unknown)}")
    if problems:
        raise ValidationFailed.for_fields(
            f"The credentials for {entry.key} are incomplete or malformed ({'; '.join(problems)}). "
            f"Its fields: {', '.join(declared)}.",
            *(f"credentials.{name}" for name in [*missing, *mismatched, *unknown]),
        )
    values = {name: given[name] for name in declared}
    assertion = entry.mint.assertion if entry.mint is not None else None
    if assertion is not None:
        try:
            signing_key(assertion, values[assertion.private_key])
        except InvalidPrivateKey:
            raise ValidationFailed.for_fields(
                f"credentials.{assertion.private_key} must be a PEM private key for "
                f"{assertion.algorithm} (`-----BEGIN PRIVATE KEY-----` …).",
                f"credentials.{assertion.private_key}",
            ) from None
    return values


def account_digest(entry: ProviderEntry, values: Mapping[str, str]) -> str:
    """The account id of credentials whose entry has no identity call: a digest of the
    non-secret fields (an email, a subdomain), else of the secret ones. Stable, so the same
    credentials submitted again update their connection."""
    public = {f.name: values[f.name] for f in entry.credentials if not f.secret}
    chosen = public or {f.name: values[f.name] for f in entry.credentials}
    text = json.dumps([entry.key, chosen], sort_keys=True)
    return DIGEST_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Proof:
    """What the provider's answers established: a minted token, if the mode mints, and the
    account; ``digested``: the account id is ``account_digest``'s."""

    grant: TokenGrant | None
    identity: AccountIdentity
    digested: bool


class CredentialsService:
    def __init__(self, session: AsyncSession, runtime: Runtime) -> None:
        self.session = session
        self.runtime = runtime
        self.vault = TokenVault(runtime.sealer)
        self.repository = ConnectionRepository(session)
        self.events = EventRepository(session)

    def entry(self, connector_type: str) -> ProviderEntry:
        """The catalog entry of a credentials connector (400 for an unknown or OAuth one)."""
        entry = self.runtime.catalog.get(connector_type)
        if entry is None:
            raise UnknownConnectorType(
                connector_type, self.runtime.catalog.entries, "connector_type"
            )
        if entry.auth_mode not in CREDENTIALS_MODES:
            raise ValidationFailed.for_fields(USE_AUTHORIZE.format(key=entry.key), "connector_type")
        return entry

    # --- POST /credentials -------------------------------------------------------------------

    async def connect(
        self,
        access: OrgAccess,
        connector_type: str,
        given: Mapping[str, str],
        *,
        name: str | None = None,
        integration_params: Mapping[str, str] | None = None,
    ) -> tuple[Connection, bool]:
        """Check, prove and store credentials; (the connection, whether it is new). Commits
        only once the provider has accepted them."""
        entry = self.entry(connector_type)
        values = check_fields(entry, given)
        params = connection_params(entry, integration_params, None)
        await self.session.commit()  # no transaction held while the provider answers
        proof = await self.prove(entry, params, values)
        # Accepted: a service key's new end user is made now, so a refusal creates nothing.
        access = await IdentityService(self.session).acting_end_user(access)
        for attempt in (1, 2):
            existing = await self.repository.find_live_account(
                access.organization_id, access.user_id, entry.key, proof.identity.account_id
            )
            created = existing is None
            connection = existing or Connection(
                id=new_id("conn"),
                organization_id=access.organization_id,
                user_id=access.user_id,
                app_key=entry.key,
                account_id=proof.identity.account_id,
                version=1,
            )
            self._stage(connection, entry, values, params, proof, name)
            if created:
                self.repository.add(connection)
            else:
                connection.version += 1
            await self.events.record(
                connection,
                EventType.CREATED if created else EventType.REAUTHORIZED,
                auth_mode=entry.auth_mode,
                scopes=connection.scopes,
            )
            try:
                await self.session.commit()
            except IntegrityError:
                # The same account submitted twice at once: the other one created it first.
                await self.session.rollback()
                if attempt == 2:
                    raise
                continue
            # The owner's end user id is a deferred subquery: read for the answer.
            await self.session.refresh(connection, ["end_user_id"])
            logger.info(
                "connection %s: credentials for %s %s",
                connection.id,
                entry.key,
                "connected" if created else "updated",
            )
            return connection, created
        raise AssertionError("unreachable")

    # --- PUT /{connection_id}/credentials -------------------------------------------------------

    async def replace(
        self,
        access: OrgAccess,
        connection_id: str,
        given: Mapping[str, str],
        *,
        name: str | None = None,
    ) -> Connection:
        """New credentials for the caller's connection (a rotated key), proved as on connect.
        They must be the same account's where the entry reads the account from the provider;
        credentials named by their digest take the new digest as the account id."""
        connections = ConnectionService(self.session, self.runtime)
        connection = await connections.get_in(access, connection_id)
        entry = self.runtime.catalog.get(connection.app_key)
        if entry is None or connection.auth_mode not in CREDENTIALS_MODES:
            raise ValidationFailed.for_fields(
                "This connection was made through OAuth; connect the account again with "
                f"POST {API_PREFIX}/authorize rather than replacing credentials.",
                "connection_id",
            )
        values = check_fields(entry, given)
        params = dict(connection.integration_params or {})
        connection_id = connection.id
        await self.session.commit()
        proof = await self.prove(entry, params, values)
        connection = await connections.get_in(access, connection_id)  # read again after the calls
        account_id = proof.identity.account_id
        if account_id != connection.account_id:
            other = await self.repository.find_live_account(
                connection.organization_id, connection.user_id, entry.key, account_id
            )
            if not proof.digested or other is not None:
                raise ValidationFailed.for_fields(
                    "These credentials belong to another account than this connection's; "
                    f"connect that account with POST {API_PREFIX}/credentials.",
                    "credentials",
                )
            connection.account_id = account_id
        self._stage(connection, entry, values, params, proof, name)
        connection.version += 1
        await self.events.record(
            connection, EventType.REAUTHORIZED, auth_mode=entry.auth_mode, credentials="replaced"
        )
        await self.session.commit()
        logger.info("connection %s: credentials replaced", connection.id)
        return connection

    def _stage(
        self,
        connection: Connection,
        entry: ProviderEntry,
        values: Mapping[str, str],
        params: Mapping[str, str],
        proof: Proof,
        name: str | None,
    ) -> None:
        self.vault.store_credentials(connection, values, proof.grant)
        grant = proof.grant
        connection.auth_mode = entry.auth_mode
        connection.oauth_app_id = None
        connection.account_email = proof.identity.email
        connection.account_name = proof.identity.name or name or connection.account_name
        if name is not None:
            connection.credential_name = name
        connection.integration_params = dict(params)
        connection.scopes = list(grant.scopes or []) if grant is not None else []
        if grant is not None:
            connection.provider_metadata = {
                **(connection.provider_metadata or {}),
                **grant.metadata,
            }
        connection.status = ConnectionStatus.ACTIVE
        connection.status_reason = None
        connection.refresh_failures = 0
        connection.last_sync_at = utcnow()

    # --- Asking the provider ---------------------------------------------------------------------

    async def prove(
        self, entry: ProviderEntry, params: Mapping[str, str], values: Mapping[str, str]
    ) -> Proof:
        """Mint (minting modes), make the check call, read the account."""
        grant = (
            await self._mint(entry, params, values) if entry.auth_mode in MINTING_MODES else None
        )
        call_values = dict(values)
        if grant is not None:
            call_values["access_token"] = grant.access_token
        test = entry.test_request
        if test is not None:
            response = await self._call(entry, params, call_values, test)
            _judge(entry, response, test.expect_status, "check call")
        mapping = entry.userinfo
        if mapping is None or mapping.url is None:
            identity = AccountIdentity(account_digest(entry, values), None, None)
            return Proof(grant, identity, digested=True)
        response = await self._call(entry, params, call_values, mapping)
        _judge(entry, response, SUCCESS_STATUSES, "identity call")
        try:
            identity = identity_from_document(response.json(), mapping)
        except (ValueError, ProviderBadAnswer):
            raise ProviderError(
                f"The {entry.display_name} identity call answered without an account id."
            ) from None
        return Proof(grant, identity, digested=False)

    async def _mint(
        self, entry: ProviderEntry, params: Mapping[str, str], values: Mapping[str, str]
    ) -> TokenGrant:
        try:
            return await mint(self.runtime, entry, params, values)
        except ProviderRejected as exc:
            raise CredentialsRejected(
                f"The {entry.display_name} token endpoint refused these credentials "
                f"({exc.error}). Check them and submit them again.",
                details={"error": exc.error},
            ) from None
        except ProviderUnreachable as exc:
            logger.warning("credentials for %s: the token endpoint failed (%s)", entry.key, exc)
            raise _unavailable(entry) from None
        except (ProviderBadAnswer, DestinationNotAllowed) as exc:
            raise ProviderError(f"The {entry.display_name} token endpoint: {exc}.") from None

    async def _call(
        self,
        entry: ProviderEntry,
        params: Mapping[str, str],
        values: Mapping[str, str],
        call: TestRequest | IdentityMapping,
    ) -> httpx.Response:
        try:
            return await send_with_credentials(self.runtime, entry, params, values, call)
        except DestinationRefused as exc:
            raise ProviderError(
                f"The {entry.display_name} address is not an allowed destination ({exc.reason})."
            ) from None
        except httpx.TransportError as exc:
            logger.warning("credentials for %s: %s", entry.key, type(exc).__name__)
            raise _unavailable(entry) from None


def _judge(
    entry: ProviderEntry, response: httpx.Response, expected: Container[int], call: str
) -> None:
    status = response.status_code
    if status in (401, 403):
        raise CredentialsRejected(
            f"The provider refused these credentials ({call} answered {status}). Check them "
            "and submit them again."
        )
    if status >= 500 or status == 429:
        logger.warning("credentials for %s: the %s answered %d", entry.key, call, status)
        raise ProviderUnavailable(
            f"The provider could not take the {call} ({status}); try again shortly.",
            headers={"Retry-After": "30"},
        )
    if status not in expected:
        raise ProviderError(f"The provider answered the {call} with {status}.")


def _unavailable(entry: ProviderEntry) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"{entry.display_name} could not be reached; try again shortly.",
        headers={"Retry-After": "30"},
    )
