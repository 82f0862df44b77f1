"""Behaviour features, ranking models, metrics and explanations."""

import warehouse.threads  # noqa: F401  (idle OpenMP threads sleep: before torch loads)
