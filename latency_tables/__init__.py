"""Per-device latency lookup tables built from real TFLite benchmarks of every block of a search space."""
