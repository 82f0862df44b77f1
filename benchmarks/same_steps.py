"""Does one run of benchmarks/microlens.py repeat another? For each step both runs hold: how many
test users (rows of a cold step's slices) got another NDCG@10 and by how much at most, the largest
difference of any metric it recorded and of its validation curve, with both code versions and fit
times. Nothing is trained or loaded. It checks that a rerun of the command on newer ranker code
repeats the steps that code did not change (a rerun on other ranker code cannot resume the old run).

    .venv/bin/python benchmarks/same_steps.py benchmarks/results/microlens-50k-whole.summary.json \\
        benchmarks/results/microlens-50k-whole-v2.summary.json

Both runs must hold the same test users (`test_rows_sha1`). Never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from microlens_report import from_summary  # benchmarks/, beside this script


def read_run(file: str) -> dict[str, Any]:
    """A run's JSON or .summary.json, its per-user values unpacked; SystemExit naming what is wrong."""
    path = Path(file)
    if not path.is_file():
        raise SystemExit(f"{file}: no such file")
    try:
        return from_summary(json.loads(path.read_text()))
    except ValueError as error:
        raise SystemExit(f"{file}: not a benchmarks/microlens.py JSON ({error})") from None


def per_user(step: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each user's NDCG@10 by 'protocol' (a warm step) or 'slice/protocol' (a cold step)."""
    values = step.get("ndcg10_per_user", {})
    flat = {}
    for key, value in values.items():
        for protocol, row in value.items() if isinstance(value, dict) else [(None, value)]:
            flat[key if protocol is None else f"{key}/{protocol}"] = np.asarray(row, dtype=np.float64)
    return flat


def leaves(record: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every number of a step's metrics (nested dicts and lists), by its path."""
    if isinstance(record, dict):
        for key, value in record.items():
            yield from leaves(value, f"{prefix}{key}/")
    elif isinstance(record, list):
        for i, value in enumerate(record):
            yield from leaves(value, f"{prefix}{i}/")
    elif isinstance(record, (int, float)) and not isinstance(record, bool):
        yield prefix.rstrip("/"), float(record)


def metrics(step: dict[str, Any]) -> dict[str, float]:
    return dict(leaves({k: step[k] for k in ("metrics", "item_cold", "user_cold") if k in step}))


def compare_step(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    users_a, users_b = per_user(a), per_user(b)
    differing, largest = 0, 0.0
    for key in users_a.keys() & users_b.keys():
        if len(users_a[key]) != len(users_b[key]):
            raise SystemExit(f"{key}: {len(users_a[key])} users in one run, {len(users_b[key])} in the other: not the same test rows")
        gap = np.abs(users_a[key] - users_b[key])
        differing += int((gap > 0).sum())
        largest = max(largest, float(gap.max(initial=0.0)))
    metric_a, metric_b = metrics(a), metrics(b)
    metric_gaps = {k: abs(metric_a[k] - metric_b[k]) for k in metric_a.keys() & metric_b.keys()}
    worst = max((k for k in metric_gaps if metric_gaps[k] > 0), key=metric_gaps.__getitem__, default=None)  # None: all equal
    curve_a, curve_b = ([e.get("valid_ndcg@10", 0.0) for e in s.get("history") or []] for s in (a, b))
    return {
        "per_user_keys": sorted(users_a.keys() & users_b.keys()),
        "per_user_in_one_only": sorted(users_a.keys() ^ users_b.keys()),
        "users_differing": differing,
        "largest_user_difference": largest,
        "largest_metric_difference": metric_gaps[worst] if worst else 0.0,
        "metric": worst,
        "metrics_in_one_only": sorted(metric_a.keys() ^ metric_b.keys()),
        "epochs": [len(curve_a), len(curve_b)],
        "largest_curve_difference": max((abs(x - y) for x, y in zip(curve_a, curve_b)), default=0.0),
        "code_version": [a.get("code_version"), b.get("code_version")],
        "fit_seconds": [a.get("fit_seconds"), b.get("fit_seconds")],
        "same_per_user": differing == 0 and bool(users_a.keys() & users_b.keys()) and len(curve_a) == len(curve_b),
    }


def compare(a_file: str, b_file: str) -> dict[str, Any]:
    a, b = read_run(a_file), read_run(b_file)
    sha = [run.get("data", {}).get("test_rows_sha1") for run in (a, b)]
    if sha[0] != sha[1]:
        raise SystemExit(f"the runs hold different test users ({sha[0]}, {sha[1]}): their steps cannot repeat each other")
    steps_a, steps_b = a.get("steps", {}), b.get("steps", {})
    return {
        "a": a_file,
        "b": b_file,
        "steps": {key: compare_step(steps_a[key], steps_b[key]) for key in steps_a if key in steps_b},
        "only_a": sorted(steps_a.keys() - steps_b.keys()),
        "only_b": sorted(steps_b.keys() - steps_a.keys()),
    }


def lines(result: dict[str, Any]) -> list[str]:
    out = [f"a = {result['a']}", f"b = {result['b']}"]
    for key, s in result["steps"].items():
        code = "same code" if s["code_version"][0] == s["code_version"][1] else f"code {s['code_version'][0]} / {s['code_version'][1]}"
        differ = f"{s['users_differing']} user values differ (at most {s['largest_user_difference']:.4g})"
        verdict = "every user's NDCG@10 the same" if s["same_per_user"] else differ
        out.append(
            f"{key}: {verdict}; largest metric difference {s['largest_metric_difference']:.2g}"
            + (f" ({s['metric']})" if s["metric"] else "")
            + f"; epochs {s['epochs'][0]} / {s['epochs'][1]}, curve at most {s['largest_curve_difference']:.2g} apart; {code}"
        )
    for side in ("only_a", "only_b"):
        if result[side]:
            out.append(f"steps in {side[-1]} only: {', '.join(result[side])}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="a run's JSON or .summary.json")
    parser.add_argument("b", help="the run compared with it")
    parser.add_argument("--out", type=Path, help="results (.json)")
    args = parser.parse_args()
    result = compare(args.a, args.b)
    print("\n".join(lines(result)))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
