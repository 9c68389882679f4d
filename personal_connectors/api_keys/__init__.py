"""The ``/api-keys`` routes: an organizations service and exchange keys, and a users own keys."""
