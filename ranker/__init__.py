"""Behaviour features, ranking models, metrics and explanations."""
