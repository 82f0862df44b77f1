"""Prefect flows and the `reelsense` command line: wiring only, no maths."""

import warehouse.threads  # noqa: F401  (idle OpenMP threads sleep: before torch loads)
