"""Benchmarks: each ``python -m bench.NAME`` prints a markdown table and writes JSON to
``bench/results/``; ``python -m bench.report`` writes ``bench/README.md`` from those files."""
