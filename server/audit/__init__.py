"""Append-only, hash-chained audit log."""

from server.audit.log import AuditLog, ChainFault

__all__ = ["AuditLog", "ChainFault"]
