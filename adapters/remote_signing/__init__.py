"""Signing with a key of an outside remote signature service over the CSC API v2 (the client side)."""
