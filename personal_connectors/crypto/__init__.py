"""Secrets at rest: AES-256-GCM with key ids (keyring, aead) and one-way hashes for bearer secrets."""
