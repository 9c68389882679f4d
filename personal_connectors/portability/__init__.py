"""Moving connections in and out of the service: JSON Lines import, encrypted export (SPEC §4).

``schemas`` is the line format both directions share, ``importer`` validates and writes lines in
batches, ``exporter`` writes an organization's live connections back out in that format, and
``envelope`` is the passphrase encryption an export is always wrapped in.
"""
