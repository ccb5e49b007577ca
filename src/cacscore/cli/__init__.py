"""Command-line interface (``cacscore``)."""
