"""Tests of cohort scoring on Dask (a package, so that the shared tests/tiny_models.py is importable)."""
