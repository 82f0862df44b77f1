"""Two cold-start steps of benchmarks/microlens.py (`cold/<model>/seedN`, the item- and user-cold
split), from separate runs or one, paired slice by slice over the same rows: each slice's HR@10
and NDCG@10 of both, and B's NDCG@10 minus A's with a bootstrap 95% CI over the slice's rows; for
each, the withheld items' HR@10 over the kept items' (the issue's cold/warm ratio). Nothing is
trained or loaded. microlens.py pairs a cold step only with the sasrec of its own run; this pairs
any two (a model's variant against the run that trained the default, say).

    .venv/bin/python benchmarks/pair_cold.py --a benchmarks/results/microlens-50k-whole.summary.json#cold/lstm-attn/seed0 \\
        --b benchmarks/results/microlens-50k-cold-trimmed.summary.json#cold/lstm-attn/seed0 --across-code

Both steps must hold the same test users (`test_rows_sha1`) and, unless `--across-code`, ran the same
ranker code. Never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from microlens_report import from_summary  # benchmarks/, beside this script

from ranker.evaluate import paired_bootstrap

PROTOCOLS = ("unmasked", "masked")


def read_cold_step(ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """'FILE.json#cold/NAME/seedN' -> (the run's data record, the step); SystemExit naming what is missing."""
    file, sep, step = ref.partition("#")
    if not sep or not step.startswith("cold/"):
        raise SystemExit(f"{ref}: expected FILE.json#cold/NAME/seedN, e.g. whole.summary.json#cold/sasrec-content/seed0")
    if not Path(file).is_file():
        raise SystemExit(f"{ref}: no such file {file}")
    run = from_summary(json.loads(Path(file).read_text()))
    if step not in run.get("steps", {}):
        cold = sorted(k for k in run.get("steps", {}) if k.startswith("cold/"))
        raise SystemExit(f"{ref}: {file} has no step {step!r}; its cold steps: {', '.join(cold) or 'none'}")
    if "ndcg10_per_user" not in run["steps"][step]:
        raise SystemExit(f"{ref}: the step kept no per-row NDCG@10")
    return run["data"], run["steps"][step]


def hr10(step: dict[str, Any], slice_name: str, protocol: str) -> float:
    kind, key = ("item_cold", slice_name) if slice_name in step["item_cold"] else ("user_cold", slice_name.removeprefix("new_users_"))
    return float(step[kind][key][protocol].get("hr@10", 0.0))


def compare(a_ref: str, b_ref: str, *, seed: int = 0, across_code: bool = False) -> dict[str, Any]:
    (a_data, a), (b_data, b) = read_cold_step(a_ref), read_cold_step(b_ref)
    if a_data["test_rows_sha1"] != b_data["test_rows_sha1"]:
        raise SystemExit(f"the steps hold different test users ({a_data['test_rows_sha1']}, {b_data['test_rows_sha1']}): not a pair")
    if a["code_version"] != b["code_version"] and not across_code:
        raise SystemExit(
            f"{a_ref} and {b_ref} ran different ranker code ({a['code_version']}, {b['code_version']}): --across-code pairs them anyway and records both"
        )
    result: dict[str, Any] = {"a": a_ref, "b": b_ref, "code_version_a": a["code_version"], "code_version_b": b["code_version"], "slices": {}}
    result["in_one_step_only"] = sorted(set(a["ndcg10_per_user"]) ^ set(b["ndcg10_per_user"]))  # said, not dropped unsaid
    for name, by_protocol in a["ndcg10_per_user"].items():
        if name not in b["ndcg10_per_user"]:
            continue
        result["slices"][name] = {
            p: {
                "rows": len(by_protocol[p]),
                "hr@10": {"a": hr10(a, name, p), "b": hr10(b, name, p)},
                "ndcg@10_b_minus_a": paired_bootstrap(np.asarray(b["ndcg10_per_user"][name][p]), np.asarray(by_protocol[p]), seed=seed),
            }
            for p in PROTOCOLS
        }
    result["cold_over_warm_hr10"] = {
        side: hr10(step, "cold_targets", "unmasked") / max(hr10(step, "warm_targets", "unmasked"), 1e-12) for side, step in (("a", a), ("b", b))
    }
    return result


def lines(result: dict[str, Any]) -> list[str]:
    out = [f"a = {result['a']}", f"b = {result['b']}"]
    for name, by_protocol in result["slices"].items():
        s = by_protocol["unmasked"]
        d = s["ndcg@10_b_minus_a"]
        out.append(
            f"{name} ({s['rows']} rows), unmasked: HR@10 a {s['hr@10']['a']:.4f}, b {s['hr@10']['b']:.4f}; NDCG@10 b - a "
            f"{d['diff']:+.4f} ({d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f})" + (f", x{d['ratio']:.2f}" if d["ratio"] is not None else "")
        )
    if result["in_one_step_only"]:
        out.append(f"slices in one step only, not paired: {', '.join(result['in_one_step_only'])}")
    ratio = result["cold_over_warm_hr10"]
    out.append(f"withheld-item HR@10 over kept-item HR@10, unmasked: a {ratio['a']:.2f}, b {ratio['b']:.2f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="the reference, FILE.json#cold/NAME/seedN")
    parser.add_argument("--b", required=True, help="the one compared with it, FILE.json#cold/NAME/seedN")
    parser.add_argument("--out", type=Path, help="results (.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--across-code", action="store_true", help="pair steps of different ranker code (both versions are recorded)")
    args = parser.parse_args()
    result = compare(args.a, args.b, seed=args.seed, across_code=args.across_code)
    print("\n".join(lines(result)))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
