"""Benchmarks: each prints its figures beside its baseline, measured in the same run, and
writes them to its own section of docs/benchmarks.md."""
