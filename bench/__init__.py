"""Reproducible benchmarks against real services (see README.md); not an installed package."""
