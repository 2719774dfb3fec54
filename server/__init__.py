"""Siegel: an on-premise signature server."""

__version__ = "0.1.0"
