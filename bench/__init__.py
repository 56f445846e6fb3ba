"""Benchmarks: ``python -m bench [--quick] [--only NAME,...]`` runs them, prints tables, writes bench/results/."""
