"""The ``connectors`` command line for operators (SPEC §4)."""
