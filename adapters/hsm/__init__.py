"""KeySource and key management over PKCS#11 (SoftHSM2 in tests and the embedded setup, any HSM in production)."""
