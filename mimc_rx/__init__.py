"""mimc-rx."""
