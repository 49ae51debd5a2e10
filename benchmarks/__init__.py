"""Benchmarks: every figure against a reference measured in the same run (`make bench`)."""
