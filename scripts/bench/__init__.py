"""The anchors of ``make bench`` (``scripts/benchmark.py``): one module per anchor behind ``harness``."""
