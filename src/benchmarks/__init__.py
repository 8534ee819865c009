"""Benchmarks, run through `python -m src.bench <name>`: they print their figures."""
