"""How a cold item borrows its id correction from its content neighbours (`cold_neighbours` and
`cold_temperature` of sasrec-content and lstm-attn; ranker/training.py ItemTower), measured on the
cold-start split of a MicroLens-50K home (README "The cold-start split").

One sasrec-content is trained on the split (ranker/coldstart.py, seed 0: 20% of items and 10% of
users withheld), with the harness's cold-step settings (patience 3, a cap of --max-epochs), and
saved to --checkpoint; a rerun with that file skips training. The same weights are then evaluated
with each setting of --grid, K@temperature (K nearest items by content cosine, weights
softmax(cosine / temperature); 0: content alone, the behaviour before borrowing existed), so the
rows differ only in how withheld items are scored:
- selection rows: validation rows of the kept users, by whether their target is a withheld item
  (never trained on: the split leaves them out of training and validation). The setting chosen is
  the one with the best NDCG@10 on the withheld-item validation rows among those whose NDCG@10
  over all validation rows is no lower than content alone's (new items get a chance, the ranking
  as a whole does not pay for it);
- test rows: the harness's item-cold slices (withheld / kept targets) and new users with 1, 2, 3
  and 5 known engagements. History unmasked and masked.

    .venv/bin/python benchmarks/cold_neighbours.py --home HOME --checkpoint cold.pt --out cold-neighbours.json [--grid 0,1,20@0.02,...]

Never asserted in tests; the README quotes the run it names.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from microlens import make  # benchmarks/, beside this script

from ranker.coldstart import cold_split, item_cold_rows, user_cold_rows
from ranker.data import MAX_HISTORY, ensure_samples, load_dataset
from ranker.evaluate import ranking_metrics, ranks_by_protocol
from warehouse.store import Warehouse

GRID = "0,1,5@0.03,20@0.01,20@0.02,20@0.03,20@0.05,20@0.1"


def setting(text: str) -> tuple[int, float]:
    """'K@temperature' (or 'K': temperature 1) -> (K, temperature); ValueError when out of range."""
    k, _, temperature = text.strip().partition("@")
    parsed = int(k), float(temperature or 1.0)
    if parsed[0] < 0 or not parsed[1] > 0:
        raise ValueError(text)
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="a reelsense home with MicroLens-50K ingested and its titles extracted")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the trained model: loaded if it exists, else trained and saved here")
    parser.add_argument("--out", type=Path, required=True, help="results (.json)")
    parser.add_argument("--grid", default=GRID, help=f"comma-separated K@temperature settings to evaluate (0: content alone; default {GRID})")
    parser.add_argument("--max-epochs", type=int, default=14, help="cap on training epochs (the harness's --cold-max-epochs of the README runs)")
    args = parser.parse_args()
    try:
        grid = {text: setting(text) for text in args.grid.split(",")}
    except ValueError:
        parser.error(f"--grid takes comma-separated K@temperature settings such as 0,20@0.02 (K >= 0, temperature > 0), got {args.grid!r}")
    if "0" not in grid:
        grid = {"0": (0, 1.0), **grid}  # content alone: the reference of the selection rule
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ensure_samples(Warehouse(args.home), MAX_HISTORY)
    data = load_dataset(Warehouse(args.home), MAX_HISTORY)
    split = cold_split(data, seed=0)
    kept_users = ~np.isin(data.queries.users, list(split.withheld_users))
    valid = np.flatnonzero((data.split == "valid") & kept_users)
    withheld = split.withheld_items[data.targets[valid]]
    rows = {
        "valid_all": valid,
        "valid_withheld": valid[withheld],
        "valid_kept": valid[~withheld],
        **{f"test_{k}": v for k, v in item_cold_rows(data, split).items()},
        **{f"new_users_{k}": v for k, v in user_cold_rows(data, split).items()},
    }
    model = make("sasrec-content", {"max_epochs": args.max_epochs, "patience": 3})
    results: dict = {"command": " ".join(["python", *sys.argv]), "rows": {k: len(v) for k, v in rows.items()}, "by_setting": {}}
    if args.checkpoint.exists():
        model.load(args.checkpoint, split.train_data)
    else:
        started = time.perf_counter()
        model.fit(split.train_data, seed=0)
        results["fit_seconds"] = round(time.perf_counter() - started, 1)
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        model.save(args.checkpoint)
    results["history"] = model.history
    seen = model.net.items.has_delta.cpu().numpy()
    for name, (k, temperature) in grid.items():
        started = time.perf_counter()
        model.net.items.neighbours, model.net.items.temperature = k, temperature
        model.net.items.set_items(split.train_data, seen)
        by_slice = {}
        for slice_name, where in rows.items():
            ranks = ranks_by_protocol(model, data, where, data.queries.take(where))
            by_slice[slice_name] = {p: ranking_metrics(r, seed=0) for p, r in ranks.items()}
        results["by_setting"][name] = by_slice
        cold, warm = by_slice["test_cold_targets"]["unmasked"], by_slice["test_warm_targets"]["unmasked"]
        print(
            f"{name}: validation NDCG@10 {by_slice['valid_all']['unmasked']['ndcg@10']:.4f} (withheld {by_slice['valid_withheld']['unmasked']['ndcg@10']:.4f}, "
            f"kept {by_slice['valid_kept']['unmasked']['ndcg@10']:.4f}); test HR@10 withheld {cold['hr@10']:.4f}, kept {warm['hr@10']:.4f}, "
            f"ratio {cold['hr@10'] / max(warm['hr@10'], 1e-12):.2f} ({time.perf_counter() - started:.0f}s)",
            flush=True,
        )
    valid = {name: (by["valid_all"]["unmasked"]["ndcg@10"], by["valid_withheld"]["unmasked"]["ndcg@10"]) for name, by in results["by_setting"].items()}
    results["chosen"] = max((name for name in valid if valid[name][0] >= valid["0"][0]), key=lambda name: valid[name][1])
    print(f"chosen: {results['chosen']} (best validation NDCG@10 on withheld targets, all validation rows no lower than content alone's)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
