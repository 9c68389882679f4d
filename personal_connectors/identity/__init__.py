"""Organizations, users, memberships and API keys: who is calling, and in which organization."""
