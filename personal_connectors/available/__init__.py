"""The connector catalog as the API shows it: each provider with the caller's state at it."""
