"""Connect sessions and the hosted connect page: a user manages their own connections in the
browser with a short-lived link instead of an API key."""
