"""Two saved sequence rankers paired over the same rows of a MicroLens-50K home: NDCG@10 per row,
the difference B minus A with a paired bootstrap 95% CI (ranker/evaluate.py), both protocols.

Each side is NAME=CHECKPOINT[@K@temperature]: a sasrec or sasrec-content checkpoint (as
`benchmarks/cold_neighbours.py` saves them), loaded onto the split's training data; the optional
K@temperature sets how its cold items borrow (ranker/training.py ItemTower) for this evaluation. A
checkpoint that does not exist yet is trained first (seed 0, patience 3, capped at --max-epochs, the
harness's settings) and saved there. The rows are those of cold_neighbours.py: `--split cold`, the
cold-start split's validation rows by target, its item-cold test slices and its new users; `--split
main`, every test user, by whether the target was seen in training.

    .venv/bin/python benchmarks/pair_checkpoints.py --home HOME --split main --max-epochs 30 \\
        --a sasrec=main-sasrec.pt --b sasrec-content=main.pt --out pair.json

Never asserted in tests; benchmarks/results/microlens-50k-history.md quotes the runs it names.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cold_neighbours import cold_rows, evaluate_rows, load_or_train, main_rows, setting  # benchmarks/, beside this script
from microlens import make
from pair_seeds import read_step

from ranker.data import MAX_HISTORY, Dataset, ensure_samples, load_dataset
from ranker.evaluate import paired_bootstrap
from warehouse.store import Warehouse

SEQUENCE_RANKERS = ("sasrec", "sasrec-content")


def side(text: str) -> tuple[str, Path, tuple[int, float] | None]:
    """'NAME=PATH[@K@temperature]' -> (name, path, borrowing or None); ValueError when malformed.
    PATH may also be a harness JSON and its step, `microlens.json#main/sasrec/seed0` (--split main):
    that step's NDCG@10 per test user, as benchmarks/microlens.py recorded it, nothing loaded."""
    name, _, rest = text.partition("=")
    path, _, borrow = rest.partition("@")
    if name not in SEQUENCE_RANKERS or not path or (borrow and (name != "sasrec-content" or "#" in path)):
        raise ValueError(text)  # only sasrec-content has cold items that borrow
    return name, Path(path), setting(borrow) if borrow else None


def recorded(path: Path, rows: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """A harness step's NDCG@10 per test user (`file.json#step`) cut into the main split's slices."""
    values = read_step(str(path), {})[1]["ndcg10_per_user"]  # named errors for a missing file, step or values
    if len(values["unmasked"]) != len(rows["test_all"]):
        raise SystemExit(f"{path} holds {len(values['unmasked'])} users, the split {len(rows['test_all'])}: not the same test users")
    position = {row: i for i, row in enumerate(rows["test_all"])}
    return {s: {p: np.asarray(v)[[position[r] for r in where]] for p, v in values.items()} for s, where in rows.items()}


def loaded(name: str, path: Path, borrow: tuple[int, float] | None, train_data: Dataset, max_epochs: int, record: dict[str, Any]) -> Any:
    model: Any = make(name, {"max_epochs": max_epochs, "patience": 3})
    load_or_train(model, path, train_data, record)
    if borrow is not None:
        items = model.net.items
        items.neighbours, items.temperature = borrow
        items.set_items(train_data, items.has_delta.cpu().numpy())
    record["borrowing"] = f"{model.net.items.neighbours}@{model.net.items.temperature}" if model.use_content else "-"
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="a reelsense home with MicroLens-50K ingested and its titles extracted")
    parser.add_argument("--split", choices=("cold", "main"), required=True, help="whose rows: the cold-start split's, or every test user of the warm split")
    parser.add_argument(
        "--a", required=True, help="the reference, NAME=CHECKPOINT[@K@temperature] (NAME: sasrec or sasrec-content), or NAME=HARNESS.json#STEP (--split main)"
    )
    parser.add_argument("--b", required=True, help="the one compared with it, same form")
    parser.add_argument("--max-epochs", type=int, default=14, help="cap on epochs where a checkpoint is trained here (default 14)")
    parser.add_argument("--out", type=Path, required=True, help="results (.json)")
    args = parser.parse_args()
    try:
        sides = {"a": side(args.a), "b": side(args.b)}
    except ValueError as exc:
        parser.error(
            f"--a and --b take NAME=CHECKPOINT[@K@temperature] with NAME one of {', '.join(SEQUENCE_RANKERS)} (@K@temperature: sasrec-content only), got {exc}"
        )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ensure_samples(Warehouse(args.home), MAX_HISTORY)
    data = load_dataset(Warehouse(args.home), MAX_HISTORY)
    train_data, rows = cold_rows(data) if args.split == "cold" else main_rows(data)
    results: dict = {"command": shlex.join(["python", *sys.argv]), "rows": {k: len(v) for k, v in rows.items()}, "sides": {}}
    per: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for key, (name, path, borrow) in sides.items():
        record: dict[str, Any] = {"name": name, "checkpoint": str(path)}
        results["sides"][key] = record
        if "#" in str(path):  # recorded by the harness: nothing to load
            if args.split != "main":
                parser.error(f"a harness step ({path}) holds the main split's test users; use --split main")
            per[key], record["borrowing"] = recorded(path, rows), "as recorded"
            continue
        model = loaded(name, path, borrow, train_data, args.max_epochs, record)
        per[key], record["metrics"] = {}, {}
        for slice_name, where in rows.items():
            record["metrics"][slice_name], per[key][slice_name] = evaluate_rows(model, data, where)
    for key in sides:
        means = ", ".join(f"{s} {v['unmasked'].mean():.4f}" for s, v in per[key].items() if len(v["unmasked"]))
        results["sides"][key]["ndcg@10"] = {s: {p: float(v.mean()) for p, v in by_p.items()} for s, by_p in per[key].items() if len(by_p["unmasked"])}
        print(f"{key} {sides[key][0]}: NDCG@10 unmasked {means}", flush=True)
    results["b_minus_a"] = {s: {p: paired_bootstrap(per["b"][s][p], per["a"][s][p], seed=0) for p in per["a"][s]} for s in rows if len(rows[s])}
    for s, by_p in results["b_minus_a"].items():
        print(f"b - a, {s}: " + "; ".join(f"{p} {v['diff']:+.4f} ({v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f})" for p, v in by_p.items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
