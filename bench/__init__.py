"""Benchmarks of the ledger: each figure is a ratio against a baseline measured in the same run.

``python -m bench`` runs every figure, ``python -m bench --quick`` runs them
with small sizes, and ``--only KEY`` runs one. The results table is printed
and written to ``bench/results.json``; ``docs/benchmarks.md`` explains the
figures and the last full run.
"""
