"""The sans-I/O MIMC protocol core: bytes and time in, bytes and events out."""
