"""An organization's own settings (``/organization``), for its owners and admins."""
