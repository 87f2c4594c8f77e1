"""Benchmarks of the inference backends (``mobilesam bench``); see ``bench.suite``."""
