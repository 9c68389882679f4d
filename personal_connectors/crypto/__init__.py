"""Secrets at rest: AES-256-GCM with key ids (keyring, aead); one-way hashes for bearer secrets."""
