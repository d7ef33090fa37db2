"""Benchmarks of vidcap's own code against reference tools; run them with ``make bench``."""
