"""Fuzz harnesses (hypothesis in the test suite, atheris for long runs): tests/fuzz/targets.py."""
