"""Benchmarks of caloml's components (input pipeline, simulator, models), run with ``python -m caloml.bench``.
See ``docs/benchmarks.md``.
"""
