"""OAuth apps: the client id/secret registered at a provider, service-wide or per organization."""
