"""The database: engine and sessions (``database``) and schema migrations (``migrations``)."""
