"""How a cold item borrows its id correction from its content neighbours (`cold_neighbours` and
`cold_temperature` of sasrec-content and lstm-attn; ranker/training.py ItemTower), measured on the
cold-start split of a MicroLens-50K home (benchmarks/results/microlens-50k-history.md, "The cold-start split").

One sasrec-content is trained on the split (ranker/coldstart.py, seed 0: 20% of items and 10% of
users withheld), with the harness's cold-step settings (patience 3, a cap of --max-epochs), and
saved to --checkpoint; a rerun with that file skips training. The same weights are then evaluated
with each setting of --grid, K@temperature (K nearest items by content cosine, weights
softmax(cosine / temperature); 0: content alone, the behaviour before borrowing existed), so the
rows differ only in how withheld items are scored:
- selection rows: validation rows of the kept users, by whether their target is a withheld item
  (never trained on: the split leaves them out of training and validation). The setting chosen is
  the one with the best NDCG@10 on the withheld-item validation rows among those not worse than
  content alone over all validation rows (the paired 95% interval of the difference reaches 0 or
  above): new items get a chance, the ranking as a whole does not measurably pay for it;
- test rows: the harness's item-cold slices (withheld / kept targets) and new users with 1, 2, 3
  and 5 known engagements. History unmasked and masked.
Each setting is also paired with content alone over the same rows (NDCG@10, bootstrap 95% CI).
`--borrow-dropped K@T` trains with `borrow_dropped` (microlens-50k-history.md, "Training as it serves").
`--split main` does the same on the main table's warm split (sasrec-content trained on it as the
harness's main step trains it, with the patience of 3 of those runs, capped at --max-epochs): every test user, and those whose target was
never seen in training (the items that borrow), no selection.

    .venv/bin/python benchmarks/cold_neighbours.py --home HOME --checkpoint cold.pt --out cold-neighbours.json [--grid 0,1,20@0.02,...]
    .venv/bin/python benchmarks/cold_neighbours.py --split main --max-epochs 30 --grid 0,20@0.02 --home HOME --checkpoint main.pt --out main.json

Never asserted in tests; benchmarks/results/microlens-50k-history.md quotes the run it names.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from microlens import make  # benchmarks/, beside this script

from ranker.coldstart import cold_split, item_cold_rows, user_cold_rows
from ranker.data import MAX_HISTORY, Dataset, ensure_samples, load_dataset
from ranker.evaluate import paired_bootstrap, ranking_metrics, ranks_by_protocol, test_rows
from ranker.metrics import ndcg
from warehouse.store import Warehouse

GRID = "0,1,5@0.03,20@0.01,20@0.02,20@0.03,20@0.05,20@0.1"


def setting(text: str) -> tuple[int, float]:
    """'K@temperature' (or 'K': temperature 1) -> (K, temperature); ValueError when out of range."""
    k, _, temperature = text.strip().partition("@")
    parsed = int(k), float(temperature or 1.0)
    if parsed[0] < 0 or not parsed[1] > 0:
        raise ValueError(text)
    return parsed


def cold_rows(data: Dataset) -> tuple[Dataset, dict[str, npt.NDArray[np.int64]]]:
    """The cold-start split's training data, and its rows: validation rows of the kept users by
    whether the target was withheld (the selection rows), the harness's item-cold test slices and
    new users with 1, 2, 3 and 5 known engagements."""
    split = cold_split(data, seed=0)
    kept_users = ~np.isin(data.queries.users, list(split.withheld_users))
    valid = np.flatnonzero((data.split == "valid") & kept_users)
    withheld = split.withheld_items[data.targets[valid]]
    return split.train_data, {
        "valid_all": valid,
        "valid_withheld": valid[withheld],
        "valid_kept": valid[~withheld],
        **{f"test_{k}": v for k, v in item_cold_rows(data, split).items()},
        **{f"new_users_{k}": v for k, v in user_cold_rows(data, split).items()},
    }


def main_rows(data: Dataset) -> tuple[Dataset, dict[str, npt.NDArray[np.int64]]]:
    """The warm split (trained on as it is), and its rows: every test user (the main table's), by
    whether the target was ever seen in training (never seen: no trained correction of its own)."""
    test = test_rows(data, max_users=None, seed=0)
    never = ~data.in_training[data.targets[test]]
    return data, {"test_all": test, "test_never_seen": test[never], "test_seen": test[~never]}


def load_or_train(model: Any, checkpoint: Path, train_data: Dataset, record: dict[str, Any]) -> None:
    """Load `checkpoint` onto `train_data`, or train the model (seed 0) and save it there; the fit's
    seconds (when trained) and the epoch history go into `record`."""
    if checkpoint.exists():
        model.load(checkpoint, train_data)
    else:
        started = time.perf_counter()
        model.fit(train_data, seed=0)
        record["fit_seconds"] = round(time.perf_counter() - started, 1)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        model.save(checkpoint)
    record["history"] = model.history


def evaluate_rows(model: Any, data: Dataset, rows: npt.NDArray[np.int64]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The rows ranked under both protocols: metrics with CIs, and NDCG@10 per row (for pairing)."""
    ranks = ranks_by_protocol(model, data, rows, data.queries.take(rows))
    return {p: ranking_metrics(r, seed=0) for p, r in ranks.items()}, {p: ndcg(r, 10) for p, r in ranks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="a reelsense home with MicroLens-50K ingested and its titles extracted")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the trained model: loaded if it exists, else trained and saved here")
    parser.add_argument("--out", type=Path, required=True, help="results (.json)")
    parser.add_argument("--grid", default=GRID, help=f"comma-separated K@temperature settings to evaluate (0: content alone; default {GRID})")
    parser.add_argument("--max-epochs", type=int, default=14, help="cap on training epochs (the harness's --cold-max-epochs of the runs it was used for)")
    parser.add_argument(
        "--split",
        choices=("cold", "main"),
        default="cold",
        help="cold: the cold-start split (default); main: the main table's warm split, all test users, by whether the target was seen in training",
    )
    parser.add_argument(
        "--borrow-dropped",
        metavar="K@T",
        type=setting,
        help=(
            "train with borrow_dropped at K@temperature (an item whose delta a batch drops borrows its K nearest "
            "trained items' corrections, as a cold item does at inference; e.g. 20@0.02, the inference default)"
        ),
    )
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
    train_data, rows = cold_rows(data) if args.split == "cold" else main_rows(data)
    settings: dict = {"max_epochs": args.max_epochs, "patience": 3}
    if args.borrow_dropped:
        k, temperature = args.borrow_dropped
        if not k:
            parser.error("--borrow-dropped needs K above 0 (K@temperature, e.g. 20@0.02)")
        settings |= {"borrow_dropped": True, "cold_neighbours": k, "cold_temperature": temperature}
    model = make("sasrec-content", settings)
    results: dict = {"command": shlex.join(["python", *sys.argv]), "train_settings": settings, "rows": {k: len(v) for k, v in rows.items()}, "by_setting": {}}
    load_or_train(model, args.checkpoint, train_data, results)
    results["trained_config"] = dataclasses.asdict(model.config)  # a loaded checkpoint's own, whatever was asked
    seen = model.net.items.has_delta.cpu().numpy()
    per_user: dict[str, dict[str, dict[str, np.ndarray]]] = {}  # setting -> slice -> protocol -> NDCG@10 per row
    for name, (k, temperature) in grid.items():
        started = time.perf_counter()
        model.net.items.neighbours, model.net.items.temperature = k, temperature
        model.net.items.set_items(train_data, seen)
        by_slice, per_user[name] = {}, {}
        for slice_name, where in rows.items():
            by_slice[slice_name], per_user[name][slice_name] = evaluate_rows(model, data, where)
        if name != "0":  # the same rows with content alone: paired over them
            by_slice["vs_content_alone"] = {
                s: {p: paired_bootstrap(v, per_user["0"][s][p], seed=0) for p, v in by_p.items()} for s, by_p in per_user[name].items() if len(rows[s])
            }
        results["by_setting"][name] = by_slice
        line = ", ".join(f"{s} {by_slice[s]['unmasked'].get('ndcg@10', 0):.4f} / HR {by_slice[s]['unmasked'].get('hr@10', 0):.4f}" for s in rows)
        print(f"{name}: NDCG@10 / HR@10 unmasked: {line} ({time.perf_counter() - started:.0f}s)", flush=True)
    if args.split == "cold":
        by = results["by_setting"]
        # Not worse on all validation rows: the paired 95% interval against content alone reaches 0 or above.
        fine = ["0", *(name for name in by if name != "0" and by[name]["vs_content_alone"]["valid_all"]["unmasked"]["ci95"][1] >= 0)]
        results["chosen"] = max(fine, key=lambda name: by[name]["valid_withheld"]["unmasked"]["ndcg@10"])
        print(
            f"chosen: {results['chosen']} (best validation NDCG@10 on withheld targets of those not worse than content alone on all validation rows)",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
