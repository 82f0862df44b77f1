"""Ranker names, importable without torch (the CLI lists them before loading any model)."""

BASE_MODELS = [
    "popularity", "itemknn", "bpr-mf", "sasrec", "sasrec-content", "lstm-attn", "lstm-attn-no-content",
]
NEEDS_BASE = {"lightgbm": "lstm-attn"}  # lightgbm re-ranks lstm-attn's candidates
ALL_MODELS = [*BASE_MODELS, *NEEDS_BASE]
CANDIDATES = 200  # similarity candidates per user that score-batch re-ranks, by default (and evaluate measures)
REPORT_PAGES = 300  # user pages a report writes by default: the run's most active users
