"""The audit trail of connections (``connection_events``), read back for operators."""
