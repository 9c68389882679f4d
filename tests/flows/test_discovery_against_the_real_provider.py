"""Discovery against the real provider: a metadata document whose issuer does not match the
URL it was fetched from is refused, and no flow starts."""

from __future__ import annotations

from pathlib import Path

import yaml

from personal_connectors.apps.service import OAuthAppService
from personal_connectors.identity.service import IdentityService
from personal_connectors.models import Role
from tests.conftest import CLIENT_ID, CLIENT_SECRET, local_provider_entry
from tests.support import web
from tests.support.oidc import OidcProvider, free_port
from tests.support.service import TEST_ENCRYPTION_KEY, ServiceProcess


def test_metadata_fetched_under_another_name_is_refused(oidc: OidcProvider, tmp_path: Path) -> None:
    spoofed = {
        **local_provider_entry(oidc),
        "discovery_url": oidc.discovery_url.replace("127.0.0.1", "localhost"),
    }
    providers = tmp_path / "providers.yaml"
    providers.write_text(
        yaml.safe_dump({"local-oidc": local_provider_entry(oidc), "spoofed": spoofed})
    )
    port = free_port()
    service = ServiceProcess(
        port,
        {
            "CONNECTORS_DATA_DIR": str(tmp_path / "data"),
            "CONNECTORS_BASE_URL": f"http://127.0.0.1:{port}",
            "CONNECTORS_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
            "CONNECTORS_PROVIDERS_FILE": str(providers),
        },
        tmp_path / "service.log",
    ).start()
    try:

        async def setup(session, runtime):  # type: ignore[no-untyped-def]
            apps = OAuthAppService(session, runtime.sealer, runtime.catalog)
            for key in ("local-oidc", "spoofed"):
                await apps.configure(None, key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
            identities = IdentityService(session)
            org = await identities.create_organization("O")
            user = await identities.create_user("d@example.test", org.id, role=Role.OWNER)
            return org.id, (await identities.create_api_key(user.id)).plaintext

        org_id, key = service.run_db(setup)
        headers, params = {"X-API-Key": key}, {"organization_id": org_id}
        refused = web.post(
            f"{service.api}/authorize",
            params=params,
            headers=headers,
            json={"connector_type": "spoofed"},
        )
        assert refused.status_code == 502
        assert refused.json()["error"]["code"] == "PROVIDER_ERROR"
        assert "issuer" in refused.json()["error"]["system_message"]
        accepted = web.post(
            f"{service.api}/authorize",
            params=params,
            headers=headers,
            json={"connector_type": "local-oidc"},
        )
        assert accepted.status_code == 200
    finally:
        service.stop()
