"""A test identity provider that signs JWTs: OpenID discovery and a JWKS on a loopback port,
keys it can rotate, and a count of the JWKS fetches (the token exchange tests' second issuer,
beside the real OpenID provider)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from tests.support.loopback import LoopbackServer, QuietHandler


class TestIssuer:
    __test__ = False  # not a test class

    def __init__(self) -> None:
        self.keys: list[RSAKey | ECKey] = [RSAKey.generate_key(2048, parameters={"kid": "k1"})]
        self.jwks_fetches = 0
        issuer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": issuer.issuer,
                        "authorization_endpoint": f"{issuer.issuer}/authorize",
                        "token_endpoint": f"{issuer.issuer}/token",
                        "jwks_uri": f"{issuer.issuer}/jwks",
                    }
                elif self.path == "/jwks":
                    issuer.jwks_fetches += 1
                    body = KeySet(list(issuer.keys)).as_dict(private=False)
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = LoopbackServer(Handler)
        self.issuer = self._server.base_url

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    def rotate(self) -> None:
        """Publish a new signing key (an EC one) beside the old; sign with the new from now."""
        self.keys.append(ECKey.generate_key("P-256", parameters={"kid": f"k{len(self.keys) + 1}"}))

    def sign(
        self,
        subject: str,
        *,
        audience: str = "platform",
        lifetime: int = 300,
        key: RSAKey | ECKey | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        key = key or self.keys[-1]
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        algorithm = "RS256" if isinstance(key, RSAKey) else "ES256"
        return jwt.encode({"alg": algorithm, "kid": key.kid, **(header or {})}, payload, key)

    def close(self) -> None:
        self._server.close()
