"""Signature formats as prepare / sign / assemble, and the KeySource that signs a digest."""
