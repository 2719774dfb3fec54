"""The long-term archive (issue #8): hash trees, evidence records (RFC 4998 / RFC 6283), their verification, the service."""
