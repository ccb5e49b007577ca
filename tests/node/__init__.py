"""Tests of the DICOM node (a package, so that the shared tests/tiny_models.py is importable)."""
