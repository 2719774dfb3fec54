"""Siegel as a remote signature service: the domain side of the CSC API server (``/csc/v2``)."""
