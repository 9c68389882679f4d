"""Operating the encryption keys: re-encrypting every stored secret under the newest key."""
