"""The markdown of benchmarks/microlens.py's JSON: the warm tables of the main seed, the served
path, the seeds, the slices, the cold-start split and each fit's validation curve, each table from
the steps it names. Run alone, it writes a run's .md again from its JSON or .summary.json:
`python benchmarks/microlens_report.py benchmarks/results/microlens-50k-whole-v4.summary.json`."""

from __future__ import annotations

import numpy as np
import torch

from flows.console import cold_text, served_markdown
from ranker.coldstart import NEW_USER_STEPS
from ranker.evaluate import PROTOCOLS
from ranker.names import REFERENCE
from ranker.training import EarlyStopping

MIN_SLICE_USERS = 30  # a smaller slice gets no interval: its bootstrap says little
_NO_WEIGHTS = torch.nn.Module()  # what `kept_epoch` hands EarlyStopping: the curve alone is replayed


def times(ratio: float | None) -> str:
    """A model's mean over sasrec's, as the tables print it (none where sasrec's mean is 0)."""
    return f"x{ratio:.2f}" if ratio is not None else "- (sasrec 0)"


def paired_tables(results: dict) -> dict[str, dict]:
    """seed -> model -> paired comparison with sasrec of that seed ("paired_vs_sasrec": seed 0, older files)."""
    return {"0": results.get("paired_vs_sasrec", {}), **results.get("paired_vs_sasrec_by_seed", {})}


def markdown(results: dict) -> str:
    seed = results.get("main_seed", 0)  # the seed of the main tables (the first of --seeds)
    d = results.get("data", {})
    # Named by its home and its shape (probe: every home was titled MicroLens-50K, with no user count).
    shape = ", ".join(f"{d[k]:,} {k.replace('_', ' ')}" for k in ("users", "items", "test_users") if isinstance(d.get(k), int))
    on = f"MicroLens benchmark on {results['home']}" if "home" in results else "MicroLens-50K"  # older JSONs: no home
    commands = results.get("commands") or [results["command"]]
    lines = [f"# {on} ({d.get('content', '?')}; {shape or 'shape not recorded'})", ""]
    if len(commands) > 1:  # steps of the same settings, run by other --models or --steps (probe: the latest alone was named)
        lines += ["The commands run on this --out, the latest last:", "", *[f"- `{c}`" for c in commands], ""]
    else:
        lines += [f"`{commands[0]}`", ""]
    lines += warm_tables(results, seed) + seed_tables(results) + slice_tables(results) + cold_tables(results) + curve_tables(results)
    return "\n".join(lines) + "\n"


def fit_text(step: dict) -> str:
    """A step's fit seconds; for a fit continued after a stop, the seconds of all its epochs, said."""
    if step.get("fit_continued_after"):
        return f"{step['epoch_seconds']} (its epochs; continued after epoch {step['fit_continued_after']})"
    return str(step["fit_seconds"])


def _slice_text(m: dict, *metrics: str) -> str:
    """A slice's metrics with its user count, '-' where it has no user (review: 0.0000 read as measured)."""
    return " / ".join(f"{m.get(k, 0):.4f}" for k in metrics) + f" ({m['users']})" if m.get("users") else "-"


def warm_tables(results: dict, seed: int) -> list[str]:
    """Both protocols' tables of the main seed, and what the score-batch path serves."""
    steps = results["steps"]
    main = {key.split("/")[1]: step for key, step in steps.items() if key.startswith("main/") and key.endswith(f"/seed{seed}")}
    if not main:  # a run of other steps only (review), or of other seeds (probe: empty seed-0 tables under "no sasrec")
        seeded = any(key.startswith("main/") for key in steps)
        return [f"No step of seed {seed} in this run: the seeds' tables below hold its models.", ""] if seeded else []
    lines = []
    sampled, ranked = (results.get("overrides") or {}).get("max_users"), (results.get("data") or {}).get("test_users")
    who = f"{ranked or sampled:,} test users (--max-users {sampled})" if sampled else "all test users"  # probe: "all" of a sample
    if REFERENCE not in main:
        lines += [f"No {REFERENCE} in this run, so no paired comparison (its per-user ranks are what the pairing needs).", ""]
    for protocol in PROTOCOLS:
        lines += [
            f"## history {protocol}, {who}, seed {seed}",
            "",
            "| model | NDCG@10 (95% CI) | HR@10 | NDCG@20 | HR@20 | cold-target HR@10 | vs sasrec NDCG@10 (paired 95% CI) | fit s | epochs |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, step in main.items():
            m = step["metrics"][protocol]
            o, cold = m["overall"], m["natural_cold_items"]
            vs = paired_tables(results).get(str(seed), {}).get(name, {}).get(protocol)
            vs_text = (
                f"{vs['diff']:+.4f} ({vs['ci95'][0]:+.4f}, {vs['ci95'][1]:+.4f}), {times(vs['ratio'])}"
                if vs
                else "reference"
                if name == REFERENCE
                else "not paired"
            )
            epochs = len(step["history"]) if step.get("history") else "-"
            lines.append(
                f"| {name} | {o['ndcg@10']:.4f} ({o['ndcg@10_ci95'][0]:.4f}-{o['ndcg@10_ci95'][1]:.4f}) | {o['hr@10']:.4f} | "
                f"{o['ndcg@20']:.4f} | {o['hr@20']:.4f} | {cold_text(cold)} | {vs_text} | "  # probe: 0.0000 (0) for no cold target
                f"{fit_text(step)} | {epochs} |"
            )
        lines.append("")
    lines += served_markdown({name: step["metrics"] for name, step in main.items()}, f"## the score-batch path, seed {seed} (engaged items removed)")
    return lines


def seed_tables(results: dict) -> list[str]:
    """Mean +- sd over the seeds, and each seed against sasrec of that seed."""
    steps = results["steps"]
    seeds = {}
    for key, step in steps.items():
        if key.startswith("main/") and step.get("metrics"):
            seeds.setdefault(key.split("/")[1], []).append(step["metrics"]["unmasked"]["overall"]["ndcg@10"])
    if not seeds:
        return []
    lines = ["## seeds (history unmasked, NDCG@10)", "", "| model | seeds | mean +- sd |", "|---|---|---|"]
    for name, values in seeds.items():
        spread = f" +- {np.std(values, ddof=1):.4f}" if len(values) > 1 else " (one seed: no spread)"
        lines.append(f"| {name} | {len(values)} | {np.mean(values):.4f}{spread} |")
    by_seed = paired_tables(results)
    if any(by_seed.values()):
        lines += [
            "",
            "## against sasrec trained with the same seed (paired over the same test users, NDCG@10 difference, 95% CI)",
            "",
            "| model | seed | unmasked | masked |",
            "|---|---|---|---|",
        ]
        for seed, table in sorted(by_seed.items()):
            for name, vs in table.items():
                cells = [f"{vs[p]['diff']:+.4f} ({vs[p]['ci95'][0]:+.4f}, {vs[p]['ci95'][1]:+.4f}), {times(vs[p]['ratio'])}" for p in PROTOCOLS]
                lines.append(f"| {name} | {seed} | {' | '.join(cells)} |")
    return lines


def slice_tables(results: dict) -> list[str]:
    """Each model against sasrec on slices of the same test users, per seed."""
    lines = []
    for seed, table in sorted(results.get("paired_slices_by_seed", {}).items()):
        for name, by_slice in table.items():
            lines += [
                "",
                f"## {name} against sasrec by slice of the test users, seed {seed} (paired, NDCG@10)",
                "",
                f"Descriptions of where the difference lies, not tests: 95% intervals per slice, none for under {MIN_SLICE_USERS} users.",
                "",
                f"| slice | users | sasrec, unmasked | {name}, unmasked | difference, unmasked (95% CI) | ratio, unmasked | "
                "difference, masked (95% CI) | ratio, masked |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for slice_name, v in by_slice.items():
                cells = [
                    f"{v[p]['diff']:+.4f}" + (f" ({v[p]['ci95'][0]:+.4f}, {v[p]['ci95'][1]:+.4f})" if v["users"] >= MIN_SLICE_USERS else "") for p in PROTOCOLS
                ]
                lines.append(
                    f"| {slice_name} | {v['users']} | {v['means']['unmasked'][REFERENCE]:.4f} | {v['means']['unmasked'][name]:.4f} | "
                    f"{cells[0]} | {times(v['unmasked']['ratio'])} | {cells[1]} | {times(v['masked']['ratio'])} |"
                )
    return lines


def cold_tables(results: dict) -> list[str]:
    """The cold-start split: withheld items, kept items, new users; paired with sasrec where it ran."""
    steps = results["steps"]
    if not any(key.startswith("cold/") for key in steps):
        return []
    sampled, ranked = (results.get("overrides") or {}).get("max_users"), (results.get("data") or {}).get("test_users")
    who = f"; the rows of the {ranked or sampled:,} sampled test users (--max-users {sampled})" if sampled else ""  # review: as the warm headings say
    lines = [
        "",
        # The split's seed is fixed (microlens.py); the models train with the run's first seed.
        "## cold start (20% of items and 10% of users withheld from training by the split's seed 0; "
        f"models trained with seed {results.get('main_seed', 0)}; history unmasked{who})",
        "",
        "| model | withheld-item targets HR@10 / NDCG@10 | kept-item targets HR@10 / NDCG@10 | "
        + " | ".join(f"new users, {k} known: NDCG@10 (users)" for k in NEW_USER_STEPS)
        + " |",
        "|---|---|---|" + "---|" * len(NEW_USER_STEPS),
    ]
    for key, step in steps.items():
        if not key.startswith("cold/"):
            continue
        c, w = step["item_cold"]["cold_targets"]["unmasked"], step["item_cold"]["warm_targets"]["unmasked"]
        users = " | ".join(_slice_text(step["user_cold"][str(k)]["unmasked"], "ndcg@10") for k in NEW_USER_STEPS)
        lines.append(f"| {key.split('/')[1]} | {_slice_text(c, 'hr@10', 'ndcg@10')} | {_slice_text(w, 'hr@10', 'ndcg@10')} | {users} |")
    if results.get("paired_cold_vs_sasrec"):
        lines += [
            "",
            "## cold start against sasrec (paired over the same rows, history unmasked, NDCG@10 difference, 95% CI)",
            "",
            "| model | slice | difference | ratio |",
            "|---|---|---|---|",
        ]
        for name, table in results["paired_cold_vs_sasrec"].items():
            for slice_name, vs in table.items():
                u = vs["unmasked"]
                ratio = times(u["ratio"])
                lines.append(f"| {name} | {slice_name} | {u['diff']:+.4f} ({u['ci95'][0]:+.4f}, {u['ci95'][1]:+.4f}) | {ratio} |")
    return lines


def kept_epoch(scores: list[float], patience: int) -> tuple[int, bool]:
    """The index of the epoch whose weights a fit kept, by training's own rule (`EarlyStopping`: a
    gain must clear 1e-4; review: the highest point is not always it), and whether the patience ran out."""
    stop, kept, ran_out = EarlyStopping(patience), 0, False
    for i, score in enumerate(scores):
        before = stop.best
        ran_out = stop.should_stop(score, _NO_WEIGHTS)
        kept = i if stop.best != before else kept
    return kept, ran_out


def curve_tables(results: dict) -> list[str]:
    """Each trained step's validation curve: NDCG@10 of full ranking after every epoch (what early
    stopping read), the epoch whose weights were kept marked *, and what stopped the fit."""
    rows = []
    for key, step in results["steps"].items():
        history = step.get("history") or []
        if not history:  # popularity, itemknn, lightgbm: nothing trained by epochs
            continue
        config = step.get("config", {})
        scores = [e["valid_ndcg@10"] for e in history]
        kept, ran_out = kept_epoch(scores, config.get("patience", 10))
        curve = " ".join(f"{v:.4f}".lstrip("0") + ("*" if i == kept else "") for i, v in enumerate(scores))
        capped = config.get("max_epochs") == len(history)
        why = "the patience and the cap at once" if ran_out and capped else "the patience" if ran_out else "the cap" if capped else "?"
        rows.append(f"| {key} | {len(history)}, {why} | {history[kept]['epoch']} | {curve} |")
    if not rows:
        return []
    return [
        "",
        "## validation curves (NDCG@10 of full ranking on the validation targets after each epoch; * the epoch whose weights are kept)",
        "",
        "| step | epochs, stopped by | kept epoch | NDCG@10 by epoch |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def pack(tree: dict | list) -> dict:
    """Per-user NDCG@10 (a list, or a dict of them by protocol or slice) as each list's length and
    its nonzero entries: a user scores above 0 only with the target in the top 10, about 3 in 100
    here, so a step's 50,000 values per protocol pack into about 1,500 position: value entries."""
    if isinstance(tree, list):
        values = np.asarray(tree, dtype=np.float64)
        return {"users": len(values), "nonzero": {str(i): float(values[i]) for i in np.flatnonzero(values)}}  # one line each in the file
    return {key: pack(sub) for key, sub in tree.items()}


def unpack(tree: dict) -> dict | list:
    """`pack`, undone: the same floats (JSON keeps a float's repr exactly)."""
    if "nonzero" in tree and "users" in tree:
        values = [0.0] * tree["users"]
        nonzero = tree["nonzero"]  # {position: value}; [[position, value], ...] as ee0b71d wrote it
        for i, value in nonzero.items() if isinstance(nonzero, dict) else nonzero:
            values[int(i)] = value
        return values
    return {key: unpack(sub) for key, sub in tree.items()}


def slim(results: dict) -> dict:
    """The .summary.json: the results with each step's per-user NDCG@10 packed (`pack`)."""
    steps = {}
    for key, step in results["steps"].items():
        steps[key] = {f: v for f, v in step.items() if f != "ndcg10_per_user"}
        if "ndcg10_per_user" in step:
            steps[key]["ndcg10_packed"] = pack(step["ndcg10_per_user"])
    return {**results, "steps": steps}


def from_summary(summary: dict) -> dict:
    """The results a .summary.json was written from (`slim`, undone), to resume a run from; a full
    JSON comes back as it is."""
    steps = {}
    for key, step in summary.get("steps", {}).items():
        steps[key] = {f: v for f, v in step.items() if f != "ndcg10_packed"}
        if "ndcg10_packed" in step:
            steps[key]["ndcg10_per_user"] = unpack(step["ndcg10_packed"])
    return {**summary, "steps": steps}


if __name__ == "__main__":  # the .md of a run, again, from its JSON or .summary.json (next to it)
    import json
    import sys
    from pathlib import Path

    if len(sys.argv) != 2 or not sys.argv[1].endswith(".json"):
        sys.exit("usage: python benchmarks/microlens_report.py RUN.json | RUN.summary.json (writes RUN.md beside it)")
    source = Path(sys.argv[1])
    target = source.with_name(source.name.removesuffix(".json").removesuffix(".summary") + ".md")
    target.write_text(markdown(from_summary(json.loads(source.read_text()))))
    print(target)
