"""Ranker names, importable without torch (the CLI lists them before loading any model)."""

from warehouse.errors import ConfigError

BASE_MODELS = [
    "popularity",
    "itemknn",
    "bpr-mf",
    "sasrec",
    "sasrec-content",
    "lstm-attn",
    "lstm-attn-no-content",
]
NEEDS_BASE = {"lightgbm": "lstm-attn"}  # lightgbm re-ranks lstm-attn's candidates
# The rankers that read the items' content vectors (lightgbm: its features compare a candidate's
# vector with the history's, ranker/lightgbm_ctr.py); a test checks this against `use_content`.
READS_CONTENT = ("sasrec-content", "lstm-attn", "lightgbm")
ALL_MODELS = [*BASE_MODELS, *NEEDS_BASE]
REFERENCE = "sasrec"  # the peer every model is compared with, paired over users
TOP_K = 20  # items score-batch keeps per user, by default (`reelsense score --k`)
CANDIDATES = 200  # similarity candidates per user that score-batch re-ranks, by default (and evaluate measures)
RETRIEVALS = ("model", "similarity")  # score-batch's --retrieval (ranker/scoring.py); the first is the default
REPORT_PAGES = 300  # user pages a report writes by default: the run's most active users


# Rankers of earlier versions, with what replaced them.
RETIRED = {"id-sequence": "the GRU of earlier versions; sasrec is the id-only sequence peer now"}


def check_rankers(names: list[str]) -> None:
    """The one check of ranker names (CLI, flows, registry): unknown names are a ConfigError."""
    unknown = [name for name in names if name not in ALL_MODELS]
    if unknown:
        retired = [f"{name!r} is retired ({RETIRED[name]})" for name in unknown if name in RETIRED]
        others = [name for name in unknown if name not in RETIRED]
        if retired:  # probe: `--models id-sequence` read as unknown, though earlier versions had it
            also = f"; unknown ranker{'s' if len(others) > 1 else ''} {', '.join(map(repr, others))}" if others else ""
            raise ConfigError(f"{'; '.join(retired)}{also}; pass {'one' if len(names) == 1 else 'some'} of {', '.join(ALL_MODELS)}")
        raise ConfigError(
            f"unknown ranker{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"pass {'one' if len(names) == 1 else 'some'} of {', '.join(ALL_MODELS)}"
        )


def rerankers_of(name: str) -> list[str]:
    """The rankers that re-rank `name`'s candidates: retraining `name` alone leaves them on its old version."""
    return [reranker for reranker, base in NEEDS_BASE.items() if base == name]
