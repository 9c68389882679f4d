"""Connections: a user's connected accounts, their listing, health and disconnection."""
