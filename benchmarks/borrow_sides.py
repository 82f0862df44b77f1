"""Which side of sasrec-content's scoring should borrow corrections (eval only, no training).

A cold item (no trained id correction) borrows its content neighbours' corrections at inference
(ranker/training.py ItemTower). It then appears with that correction both as a candidate and, where
a user's history holds it, as a history step, which training never showed the encoder. This scores
one cold-start-split checkpoint (as benchmarks/cold_neighbours.py saves it) on the harness's
item-cold test slices and new users with 1, 2, 3 and 5 known engagements in two ways, paired over
the same rows (NDCG@10, bootstrap 95% CI):
- `served`: as the model serves (borrowing on both sides);
- `candidates_only`: history steps without a trained correction are W c alone, candidates borrow.

    .venv/bin/python benchmarks/borrow_sides.py --home HOME --checkpoint cold.pt --out borrow-sides.json

Never asserted in tests; the README ("Tried: borrowing for candidates only") quotes its run,
benchmarks/results/microlens-50k-cold-semantic64-borrow-sides.summary.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import types
from pathlib import Path

import torch
from cold_neighbours import cold_rows, evaluate_rows  # benchmarks/, beside this script

from ranker.base import minibatches
from ranker.data import MAX_HISTORY, Queries, ensure_samples, load_dataset
from ranker.evaluate import PROTOCOLS, paired_bootstrap
from ranker.sasrec import Sasrec
from warehouse.store import Warehouse


@torch.no_grad()
def candidates_only(model: Sasrec, queries: Queries) -> tuple[torch.Tensor, torch.Tensor]:
    """Sasrec.user_vectors with the history side scored without borrowing."""
    model.net.eval()
    tower = model.net.items
    candidates = tower()
    borrowing = tower.cold
    tower.cold = tower.cold[:0]  # no cold rows: nothing borrows
    try:
        history = tower()
    finally:
        tower.cold = borrowing
    users = [model.net.user(torch.as_tensor(queries.hist_items[rows], device=model.device), history) for rows in minibatches(len(queries), 4096)]
    return torch.cat(users), candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="a reelsense home with MicroLens-50K ingested and its titles extracted")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a sasrec-content trained on the cold-start split (Sasrec.save)")
    parser.add_argument("--out", type=Path, required=True, help="results (.json)")
    args = parser.parse_args()
    if not args.checkpoint.exists():
        parser.error(f"{args.checkpoint} does not exist: train one with benchmarks/cold_neighbours.py --checkpoint FILE")
    ensure_samples(Warehouse(args.home), MAX_HISTORY)
    data = load_dataset(Warehouse(args.home), MAX_HISTORY)
    train_data, rows = cold_rows(data)
    rows = {k: v for k, v in rows.items() if k.startswith(("test_", "new_users_"))}
    model = Sasrec(use_content=True)
    model.load(args.checkpoint, train_data)
    results: dict = {"command": shlex.join(["python", *sys.argv]), "config": dataclasses.asdict(model.config), "by_way": {}}
    per_row: dict = {}
    for way in ("served", "candidates_only"):
        if way == "candidates_only":
            model.user_vectors = types.MethodType(candidates_only, model)
        results["by_way"][way], per_row[way] = {}, {}
        for name, where in rows.items():
            results["by_way"][way][name], per_row[way][name] = evaluate_rows(model, data, where)
            m = results["by_way"][way][name]["unmasked"]
            print(f"{way} {name}: NDCG@10 {m.get('ndcg@10', 0):.4f}, HR@10 {m.get('hr@10', 0):.4f}", flush=True)
    results["candidates_only_minus_served"] = {
        name: {p: paired_bootstrap(per_row["candidates_only"][name][p], per_row["served"][name][p], seed=0) for p in PROTOCOLS} for name in rows
    }
    for name, by_protocol in results["candidates_only_minus_served"].items():
        d = by_protocol["unmasked"]
        print(f"candidates_only - served, {name}, unmasked: {d['diff']:+.4f} ({d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
