"""OAuth 2.0 client mechanics, one module per standard; Authlib does the protocol work.

- ``rfc8414``: authorization-server metadata discovery, issuer checked.
- ``rfc9207``: the ``iss`` authorization-response parameter (mix-up defence).
- ``client``: authorization URLs with PKCE (RFC 7636), code exchange, refresh, RFC 7009 revocation.
- ``endpoints``: one provider's resolved endpoints, static or discovered.
"""
