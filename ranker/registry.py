"""The rankers by name: a plain dict. `lightgbm` re-ranks `lstm-attn`, so it is built with it.

The names themselves live in ranker/names.py (importable without torch); a test checks that this
dict builds exactly those."""

from __future__ import annotations

from ranker.bprmf import BprMF
from ranker.itemknn import ItemKNN
from ranker.lightgbm_ctr import LightGBMCtr
from ranker.names import NEEDS_BASE, check_rankers
from ranker.popularity import Popularity
from ranker.sasrec import Sasrec
from ranker.sequence import LstmAttn
from warehouse.errors import ConfigError

RANKERS = {
    "popularity": lambda device: Popularity(),
    "itemknn": lambda device: ItemKNN(),
    "bpr-mf": lambda device: BprMF(),
    "sasrec": lambda device: Sasrec(use_content=False, device=device),
    "sasrec-content": lambda device: Sasrec(use_content=True, device=device),
    "lstm-attn": lambda device: LstmAttn(use_content=True, device=device),
    "lstm-attn-no-content": lambda device: LstmAttn(use_content=False, device=device),
}


def build(name: str, device: str, trained: dict) -> object:
    if name in NEEDS_BASE:
        base = NEEDS_BASE[name]
        if base not in trained:
            raise ConfigError(f"{name} re-ranks {base}: train {base} first (list it before {name})")
        return LightGBMCtr(trained[base])
    check_rankers([name])
    return RANKERS[name](device)
