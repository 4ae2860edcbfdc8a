"""Benchmarks, run as modules of this package (`python -m bench.cold_start`); results in BENCHMARKS.md."""
