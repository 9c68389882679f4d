"""End users (SPEC §8): the platform's users a service key acts for, and their erasure."""
