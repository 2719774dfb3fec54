"""Transports: turn requests into calls of the domain and back; no cryptography here."""
