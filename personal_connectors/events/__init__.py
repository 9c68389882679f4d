"""The audit trail of connections (``connection_events``): the event types, recording an event
with the webhook deliveries it owes, the batched token-issued writer, and reading it back."""
