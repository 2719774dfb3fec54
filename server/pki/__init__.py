"""The internal PKI: CA hierarchy in the HSM, certificate profiles, CRLs, OCSP responder, RFC 3161 TSA."""
