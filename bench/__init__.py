"""Benchmarks: `make bench` runs them and writes bench/results/<name>.json.

Every result is a ratio against a baseline measured in the same run on the same machine, never an
absolute number compared with a constant: machines differ, ratios travel.
"""
