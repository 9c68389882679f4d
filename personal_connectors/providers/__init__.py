"""The provider catalog: how to speak OAuth to each service, kept as validated data.

``schema`` defines an entry, ``catalog`` loads the built-in file plus an operator's overrides,
``templating`` fills per-connection URL variables (``{subdomain}``) from validated values, and
``discovery`` completes entries that name an RFC 8414 / OpenID metadata document.
"""
