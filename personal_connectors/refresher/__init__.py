"""The background refresher: tokens refreshed before anyone asks (``connectors refresher``)."""
