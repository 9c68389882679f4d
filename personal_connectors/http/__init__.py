"""The HTTP layer: error envelope, request context, authentication dependencies."""
