"""Prefect flows and the `reelsense` command line: wiring only, no maths."""
