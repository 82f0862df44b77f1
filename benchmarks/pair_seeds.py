"""Two models over several training seeds, from the NDCG@10 per test user that benchmarks/microlens.py
recorded (its warm `main/...` and `seeds/...` steps): each seed's paired difference with a bootstrap
95% CI over users; each model's mean +- sd over seeds; the per-seed differences' mean +- sd (the
seed-to-seed spread of the gain); and the difference of the seed means paired over the same users
(per user, B's mean over seeds minus A's), whose CI resamples users only, so it leaves out the
training noise that the per-seed spread shows. Nothing is trained or loaded; the runs may be
separate JSON files of one command.

    .venv/bin/python benchmarks/pair_seeds.py --out pair-seeds.json \\
        --a p10.json#main/sasrec/seed0 --a p10s1.json#main/sasrec/seed1 \\
        --b p10.json#main/sasrec-content/seed0 --b p10s1.json#main/sasrec-content/seed1

The i-th --a and the i-th --b are one seed (their steps end in the same `/seedN`, each seed once).
Every step must hold the same test users (the harness's `test_rows_sha1`) and, within a seed, the
same code (`code_version`), unless `--across-code` (recorded in the output). Never asserted in
tests; benchmarks/results/microlens-50k-history.md quotes the runs it names.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from microlens_report import from_summary  # benchmarks/, beside this script

from ranker.evaluate import paired_bootstrap

PROTOCOLS = ("unmasked", "masked")


def read_step(ref: str, cache: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """'FILE.json#STEP' -> (the run's data record, the step); SystemExit naming what is missing."""
    file, sep, step = ref.partition("#")
    if not sep or not step:
        raise SystemExit(f"{ref}: expected FILE.json#STEP, e.g. p10.json#main/sasrec/seed0")
    if file not in cache:
        if not Path(file).is_file():
            raise SystemExit(f"{ref}: no such file {file}")
        cache[file] = from_summary(json.loads(Path(file).read_text()))  # a .summary.json's packed values unpacked
    run = cache[file]
    if step not in run.get("steps", {}):
        raise SystemExit(f"{ref}: {file} has no step {step!r}; it has {', '.join(sorted(run.get('steps', {})))}")
    values = run["steps"][step].get("ndcg10_per_user")
    if values is None:
        raise SystemExit(f"{ref}: the step kept no per-user NDCG@10 (a .summary.json written before they were packed into it? use the full JSON)")
    if set(values) != set(PROTOCOLS):
        raise SystemExit(f"{ref}: not a warm step of all test users (its per-user values are by {', '.join(sorted(values))}); use a main/ or seeds/ step")
    return run["data"], run["steps"][step]


def compare(a_refs: list[str], b_refs: list[str], *, seed: int = 0, across_code: bool = False) -> dict[str, Any]:
    if len(a_refs) != len(b_refs) or not a_refs:
        raise SystemExit(f"give one --a and one --b per seed, in the same order: got {len(a_refs)} and {len(b_refs)}")
    cache: dict[str, dict[str, Any]] = {}
    seeds = [ref.rpartition("/")[2] for ref in a_refs]
    if seeds != [ref.rpartition("/")[2] for ref in b_refs] or len(set(seeds)) != len(seeds) or not all(re.fullmatch(r"seed\d+", x) for x in seeds):
        raise SystemExit(
            f"the i-th --a and --b must be one seed, each seed once: --a ends {', '.join(seeds)}, --b {', '.join(r.rpartition('/')[2] for r in b_refs)}"
        )
    a_steps, b_steps, users = [], [], set()
    for a_ref, b_ref in zip(a_refs, b_refs, strict=True):
        (a_data, a), (b_data, b) = read_step(a_ref, cache), read_step(b_ref, cache)
        users |= {a_data["test_rows_sha1"], b_data["test_rows_sha1"]}
        if a["code_version"] != b["code_version"] and not across_code:
            raise SystemExit(
                f"{a_ref} and {b_ref} ran different code ({a['code_version']} and {b['code_version']}): not a pair "
                "(--across-code pairs them anyway and records both versions)"
            )
        a_steps.append(a)
        b_steps.append(b)
    if len(users) != 1:
        raise SystemExit(f"the steps hold different test users (test_rows_sha1 {', '.join(sorted(users))}): not a pair")
    result: dict[str, Any] = {"a": a_refs, "b": b_refs, "per_seed": [], "over_seeds": {}}
    for a_ref, b_ref, a, b in zip(a_refs, b_refs, a_steps, b_steps, strict=True):
        row: dict[str, Any] = {"a": a_ref, "b": b_ref, "code_version": a["code_version"]}
        if b["code_version"] != a["code_version"]:
            row["code_version_b"] = b["code_version"]  # --across-code: the two ran different ranker code
        for p in PROTOCOLS:
            va, vb = np.asarray(a["ndcg10_per_user"][p]), np.asarray(b["ndcg10_per_user"][p])
            row[p] = {"a": float(va.mean()), "b": float(vb.mean()), "b_minus_a": paired_bootstrap(vb, va, seed=seed)}
        result["per_seed"].append(row)
    for p in PROTOCOLS:
        a_means = [r[p]["a"] for r in result["per_seed"]]
        b_means = [r[p]["b"] for r in result["per_seed"]]
        mean_a = np.mean([s["ndcg10_per_user"][p] for s in a_steps], axis=0)
        mean_b = np.mean([s["ndcg10_per_user"][p] for s in b_steps], axis=0)
        diffs = [r[p]["b_minus_a"]["diff"] for r in result["per_seed"]]
        result["over_seeds"][p] = {
            "seeds": len(a_steps),
            "a": mean_sd(a_means),
            "b": mean_sd(b_means),
            "b_minus_a_per_seed": mean_sd(diffs),
            "b_minus_a_of_seed_means": paired_bootstrap(mean_b, mean_a, seed=seed),
        }
    return result


def mean_sd(values: list[float]) -> dict[str, float | None]:
    """Mean and sample sd (n - 1) over seeds; sd None for one seed."""
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None}


def lines(result: dict[str, Any]) -> list[str]:
    out = []
    for row in result["per_seed"]:
        parts = [
            f"{p} {row[p]['b']:.4f} - {row[p]['a']:.4f} = {row[p]['b_minus_a']['diff']:+.4f} "
            f"({row[p]['b_minus_a']['ci95'][0]:+.4f}, {row[p]['b_minus_a']['ci95'][1]:+.4f})"
            for p in PROTOCOLS
        ]
        out.append(f"{row['b']} vs {row['a']}: " + "; ".join(parts))
    for p, s in result["over_seeds"].items():
        sd = lambda x: f" +- {x:.4f}" if x is not None else ""  # noqa: E731
        d, per_seed = s["b_minus_a_of_seed_means"], s["b_minus_a_per_seed"]
        out.append(
            f"{p}, {s['seeds']} seeds: a {s['a']['mean']:.4f}{sd(s['a']['sd'])}, b {s['b']['mean']:.4f}{sd(s['b']['sd'])}; "
            f"b - a per seed {per_seed['mean']:+.4f}{sd(per_seed['sd'])}; of the seed means, paired over users "
            f"{d['diff']:+.4f} ({d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}; users resampled, not seeds), x{d['ratio']:.2f}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", action="append", required=True, help="the reference, FILE.json#STEP, once per seed")
    parser.add_argument("--b", action="append", required=True, help="the one compared with it, FILE.json#STEP, once per seed (same order)")
    parser.add_argument("--out", type=Path, help="results (.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument(
        "--across-code",
        action="store_true",
        help="pair steps of different ranker code (say why in what quotes it: e.g. where the code differs only in checks); both versions are recorded",
    )
    args = parser.parse_args()
    result = compare(args.a, args.b, seed=args.seed, across_code=args.across_code)
    print("\n".join(lines(result)))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
