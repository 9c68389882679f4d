"""Identity providers an organization trusts, and the RFC 8693 token exchange they enable."""
