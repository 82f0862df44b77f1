"""The MicroLens-50K ranking table: every model, all test users, both protocols, cold start.

    .venv/bin/python benchmarks/microlens.py --home HOME --out OUT.json
        [--models popularity,itemknn,bpr-mf,sasrec,sasrec-content,lstm-attn,lightgbm] [--seeds 0,1,2] [--max-epochs N]

HOME: `reelsense ingest microlens ../shared/data/microlens-50k` and
`reelsense extract --config configs/microlens-text.toml` (MiniLM titles). Steps, in order, each
written to the JSON (and its .md) as soon as it finishes, so an interrupted run is resumed by
running the same command again (finished steps are skipped; a fit stopped part way continues
from its last finished epoch, kept in `<out>.models/<step>.unfinished.pt`). The .summary.json
beside it holds every step with its per-user NDCG@10 packed: committed, it resumes the run in a
fresh checkout where the JSON is absent. Steps of other ranker code than the checkout's are
refused (they would not pair), naming the commit to resume from (`git_commit`; `--across-code`
goes on anyway):
1. each model with the first of --seeds on the leave-one-out split, all test users ranked against
   all items, history unmasked and masked; paired bootstrap of each model's NDCG@10 against the
   `sasrec` of the same seed (`lightgbm` re-ranks the lstm-attn of its seed: bases are fitted
   first, and their checkpoints kept in `<out>.models/`, so a run stopped between the two fits
   lightgbm on resume);
2. the cold-start split (ranker/coldstart.py: 20% of items and 10% of users withheld from
   training, split seed 0, models trained with the first of --seeds) for popularity, sasrec,
   sasrec-content and lstm-attn;
3. the other --seeds of sasrec and sasrec-content, then of lstm-attn and lightgbm (mean +- sd over
   the seeds).
Then, from the per-user NDCG@10 already stored (no training), each model against sasrec of its seed
on slices of the same test users: by how many engagements the user had before the target, and by
how often the target item was a training target (`warm_slices`).
Measured, never asserted; wall time per step is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np
import numpy.typing as npt
import torch
from microlens_report import REFERENCE, from_summary, markdown, slim  # benchmarks/, beside this script

import ranker
from ranker.artifacts import code_version
from ranker.coldstart import cold_split, item_cold_rows, user_cold_rows
from ranker.data import EVENT_INDEX, MAX_HISTORY, Dataset, ensure_samples, load_dataset
from ranker.evaluate import PROTOCOLS, evaluate_model, ranking_metrics, ranks_by_protocol, test_rows
from ranker.metrics import ndcg
from ranker.names import NEEDS_BASE, check_rankers
from ranker.registry import CONTENT_ONLY, build
from ranker.training import discard
from warehouse.errors import ReelsenseError
from warehouse.store import Warehouse

CLAIMS = ("sasrec", "sasrec-content")  # the seeds step trains these again first: the claims rest on them
SEEDED = (*CLAIMS, "lstm-attn", "lightgbm")  # the models the seeds step trains again
COLD = ("popularity", "sasrec-content", "sasrec", "lstm-attn")  # the models the cold-start split trains


# Slices of the test users (inclusive bounds; None: no upper bound). Known engagements are the
# user's history before the target (impressions left out), capped at the history window (MAX_HISTORY).
KNOWN_BINS = ((0, 4), (5, 5), (6, 7), (8, 11), (12, None))
TARGET_COUNT_BINS = ((0, 0), (1, 4), (5, 19), (20, 49), (50, None))


def warm_slices(data: Dataset, rows: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.int64]]:
    """Positions into the test `rows` of each slice, named for what it is: the user's known
    engagements before the target, and the target item's count of training targets (0: never a
    training target). Empty slices are left out."""

    def label(what: str, low: int, high: int | None) -> str:
        if high is None:
            return f"{what} {low} or more"
        return f"{what} {low}" if low == high else f"{what} {low}-{high}"

    out = {}
    for what, values, bins in (
        ("known engagements", (data.queries.hist_events[rows] > EVENT_INDEX["impression"]).sum(1), KNOWN_BINS),
        ("target's training count", data.train_counts[data.targets[rows]], TARGET_COUNT_BINS),
    ):
        for low, high in bins:
            where = np.flatnonzero((values >= low) & (values <= (high if high is not None else np.inf)))
            if len(where):
                out[label(what, low, high)] = where
    return out


def pairable(results: dict, seed: int) -> tuple[dict | None, dict[str, dict]]:
    """sasrec's step of `seed` and the other models' steps of that seed that pair with it: per-user
    NDCG@10 stored, and the same ranker code (a hash of ranker/*.py)."""
    steps = results["steps"]
    ref = steps.get(f"main/{REFERENCE}/seed{seed}")
    if ref is None or "ndcg10_per_user" not in ref:
        return None, {}
    others = {}
    for key, step in steps.items():
        name = key.split("/")[1]
        if key == f"main/{name}/seed{seed}" and name != REFERENCE and "ndcg10_per_user" in step and step.get("code_version") == ref.get("code_version"):
            others[name] = step
    return ref, others


def paired_slices(results: dict, slices: dict[str, npt.NDArray[np.int64]], users: int) -> None:
    """Each model against sasrec of its seed on every slice (paired bootstrap over the slice's
    users, from the stored per-user NDCG@10), for every seed in the JSON; rebuilt each run. Steps
    that ranked another number of users than the `users` test rows are left out."""
    seeds = sorted({int(key.rsplit("seed", 1)[1]) for key in results["steps"] if key.startswith(f"main/{REFERENCE}/")})
    results["paired_slices_by_seed"] = by_seed = {}
    for seed in seeds:
        ref, others = pairable(results, seed)
        if ref is None or len(ref["ndcg10_per_user"]["unmasked"]) != users:
            continue
        theirs = {p: np.asarray(ref["ndcg10_per_user"][p]) for p in PROTOCOLS}
        table = by_seed.setdefault(str(seed), {})
        for name, step in others.items():
            mine = {p: np.asarray(step["ndcg10_per_user"][p]) for p in PROTOCOLS}
            if len(mine["unmasked"]) != users:
                continue
            table[name] = {
                s: {
                    "users": int(len(where)),
                    "means": {p: {REFERENCE: float(theirs[p][where].mean()), name: float(mine[p][where].mean())} for p in PROTOCOLS},
                    **compare_to_values({p: v[where] for p, v in theirs.items()}, {p: v[where] for p, v in mine.items()}, seed=0),
                }
                for s, where in slices.items()
            }


def read_json(path: Path) -> dict:
    """A results file, or ValueError naming it where it is not JSON (probe: the parser's message alone)."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): restore it (git checkout for a committed summary), move it away, or use another --out") from e


def resumed(out: Path, summary: Path) -> dict:
    """The results to resume: the JSON where it is here (its steps are the run's: a step removed
    from it is trained again); in a fresh checkout without it, the summary's steps, per-user
    values unpacked. ValueError for a summary that cannot resume a run."""
    if out.exists():
        results = read_json(out)
        if summary.exists():  # a summary committed since the JSON was written, or of another run: never overwritten unread (review, probe)
            extra = sorted(set(read_json(summary).get("steps", {})) - set(results.get("steps", {})))
            if extra:
                raise ValueError(
                    f"{summary} holds steps that {out} lacks ({', '.join(extra)}), and this run would overwrite it: to resume from "
                    f"the summary, move {out} away; to train a step again, remove it from both files"
                )
        return results
    if not summary.exists():
        return {}
    kept = read_json(summary)
    unpacked = [k for k, st in kept.get("steps", {}).items() if "ndcg10_packed" not in st]
    if unpacked:
        raise ValueError(
            f"{summary} was written before it kept per-user values ({unpacked[0]} has none), so it cannot resume a run: "
            "use the full JSON it was written with, or another --out"
        )
    n = len(kept.get("steps", {}))
    print(f"resuming from {summary} ({n} step{'s' * (n != 1)}; {out} is not here)", flush=True)
    return from_summary(kept)


def make(name: str, overrides: dict, trained: dict | None = None) -> object:
    """A fresh ranker with the run's overrides; `lightgbm` re-ranks the lstm-attn in `trained`."""
    model = build(name, "cpu", trained or {})
    if dataclasses.is_dataclass(getattr(model, "config", None)):  # sasrec*, lstm-attn*
        fields = {f.name for f in dataclasses.fields(model.config)}
        if not getattr(model, "use_content", False):
            fields -= CONTENT_ONLY  # an id-only model has no content path for them to shape
        model.config = dataclasses.replace(model.config, **{k: v for k, v in overrides.items() if v is not None and k in fields})
    return model


def git_commit(repo: Path) -> str | None:
    """The commit checked out in `repo` ("+changes" where its ranker/ or benchmarks/*.py differ
    from it), None outside git: a run that spans sessions is resumed from a checkout of it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ranker", "benchmarks/*.py"], cwd=repo, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def provenance() -> dict[str, str | None]:
    """The code this process runs, taken once at its start (the files may change while it runs):
    the ranker code's hash, which decides what pairs (see `paired`), and the commit to resume from.
    Refused where `ranker` is imported from another checkout than this script's (a worktree run
    without PYTHONPATH imports the editable install's), since the commit would then be wrong."""
    repo, imported = Path(__file__).resolve().parents[1], Path(ranker.__file__).resolve().parents[1]
    if imported != repo:
        raise SystemExit(f"ranker is imported from {imported}, not from this script's checkout {repo}: run with PYTHONPATH={repo}")
    return {"code_version": code_version(), "git_commit": git_commit(repo)}


def fit(model, data, seed: int, unfinished: Path, code: dict[str, str | None]) -> dict:
    """Fit `model`, keeping its state after each epoch in `unfinished` (a stopped run continues the
    fit from there; the caller deletes it once the step is in the JSON). `code`: `provenance()`."""
    started = time.perf_counter()
    model.fit(data, seed=seed, checkpoint=unfinished)
    history = getattr(model, "history", None) or []
    return {
        "command": shlex.join(["python", *sys.argv]),
        **code,  # code_version: a run pairs steps of one ranker code only (see `paired`); git_commit
        "fit_seconds": round(time.perf_counter() - started, 1),  # this process's part of a continued fit
        "epoch_seconds": round(sum(h.get("seconds", 0.0) for h in history), 1),  # every epoch, whichever process ran it
        "fit_continued_after": getattr(model, "fit_continued_after", 0),  # epochs an earlier, stopped run had finished
        "history": getattr(model, "history", None),
        "config": dataclasses.asdict(model.config) if dataclasses.is_dataclass(getattr(model, "config", None)) else None,
    }


def fit_and_evaluate(key: str, model, data, rows, seed: int, unfinished: Path, code: dict[str, str | None]) -> dict:
    """One step of the warm table: fit with `seed`, rank every test row under both protocols (the
    test rows and the bootstrap keep seed 0, so steps of other seeds pair over the same users)."""
    step = fit(model, data, seed, unfinished, code)
    started = time.perf_counter()
    metrics, ranks = evaluate_model(model, data, rows, seed=0)
    step.update(metrics=metrics, eval_seconds=round(time.perf_counter() - started, 1), ndcg10_per_user={p: ndcg(ranks[p], 10).tolist() for p in PROTOCOLS})
    print(
        f"{key}: NDCG@10 unmasked {metrics['unmasked']['overall']['ndcg@10']:.4f}, "
        f"masked {metrics['masked']['overall']['ndcg@10']:.4f} (fit {step['fit_seconds']}s)",
        flush=True,
    )
    return step


def seed_list(text: str) -> list[int]:
    """--seeds: comma-separated non-negative integers, at least one."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"takes comma-separated seeds such as 0,1,2, got {text!r}")
    return seeds


def positive(kind: type) -> Callable[[str], int | float]:
    """--max-epochs, --cold-max-epochs, --patience, --batch, --max-users (int) and --delta-ratio
    (float): above zero, as the rankers' configs check, but refused here before any data is loaded
    or step written."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"takes a {'whole ' if kind is int else ''}number above 0, got {text!r}")
        return value

    return parse


def share(text: str) -> float:
    """--id-drop: a share of items, 0 up to (not including) 1, as the rankers' configs check."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"takes a share from 0 up to, not including, 1 such as 0.25, got {text!r}")
    return value


def count(text: str) -> int:
    """--cold-neighbours: a whole number of at least 0 (0 turns borrowing off)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"takes a whole number of at least 0, got {text!r}")
    return value


class OneLineErrors(argparse.ArgumentParser):
    """A refusal is one line (argparse printed its whole usage first; probe, 2026-12-02); --help has the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main() -> None:
    parser = OneLineErrors(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument(
        "--out",
        required=True,  # probe: a default overwrote a committed table with a run on other data
        help="the results JSON (its .md and .summary.json are written beside it); a rerun with the same --out resumes it",
    )
    parser.add_argument("--models", default="popularity,itemknn,bpr-mf,sasrec,sasrec-content,lstm-attn,lightgbm")
    parser.add_argument("--seeds", type=seed_list, default="0,1,2", help="training seeds; the first is the main tables' (default 0,1,2)")
    parser.add_argument("--max-epochs", type=positive(int), help="cap on epochs (default: the model's own, 300 for SASRec)")
    parser.add_argument("--cold-max-epochs", type=positive(int), help="cap on epochs of the cold-start split's models")
    parser.add_argument("--batch", type=positive(int), help="batch size: users a step for sasrec* (default 128, SASRec+), rows for lstm-attn* (default 256)")
    parser.add_argument(
        "--patience", type=positive(int), help="early-stopping patience in epochs of sasrec*, lstm-attn* and bpr-mf (default: theirs, 10 as RecBole's)"
    )
    parser.add_argument(
        "--content-hidden",
        type=positive(int),
        help="content-first models: hidden units of a two-layer content projection (default: the model's, a linear one)",
    )
    parser.add_argument(
        "--semantic-codes",
        type=positive(int),
        help="content-first models: K coarse and K x K fine semantic ids from the content (default: the model's, none)",
    )
    parser.add_argument(
        "--cold-neighbours",
        type=count,
        help="content-first models: items without a trained correction borrow those of their K nearest trained items (default: the model's; 0: off)",
    )
    parser.add_argument("--id-drop", type=share, help="content-first models: share of items whose id correction is dropped per batch (default: the model's)")
    parser.add_argument(
        "--delta-ratio",
        type=positive(float),
        help="content-first models: bound of the id correction, times the projected content's norm (default: the model's; 1e-6: content alone)",
    )
    parser.add_argument("--max-users", type=positive(int), help="test users (default: all)")
    parser.add_argument("--steps", default="main,cold,seeds", help="which steps to run (main, cold, seeds; default all)")
    parser.add_argument(
        "--across-code", action="store_true", help="go on with a JSON whose steps ran other ranker code (they will not pair with steps trained now)"
    )
    args = parser.parse_args()
    out, models, seeds = Path(args.out), [m.strip() for m in args.models.split(",") if m.strip()], args.seeds
    steps = {s.strip() for s in args.steps.split(",") if s.strip()}
    if not steps or steps - {"main", "cold", "seeds"}:
        parser.error(f"--steps takes main, cold and seeds, got {args.steps!r}")
    if not models or any(not m.strip() for m in args.models.split(",")):
        parser.error(f"--models takes comma-separated model names with none empty, got {args.models!r}")
    try:
        check_rankers(models)
    except ReelsenseError as e:
        parser.error(f"--models: {e}")
    # The steps this command covers, done or not: (key, seed). None is a typo that would look like a success.
    planned = [(f"main/{m}/seed{seeds[0]}", seeds[0]) for m in models if "main" in steps]
    planned += [(f"cold/{m}/seed{seeds[0]}", seeds[0]) for m in COLD if m in models and "cold" in steps]
    planned += [(f"main/{m}/seed{s}", s) for m in SEEDED if m in models and "seeds" in steps for s in seeds[1:]]
    if not planned:  # review: it loaded the data, then said "nothing ran" and exited 0
        why = {
            "cold": f"cold trains {', '.join(COLD)} only",
            "seeds": f"seeds trains {', '.join(SEEDED)} only" if seeds[1:] else f"seeds trains the seeds after the first, and --seeds {seeds[0]} has one",
        }
        parser.error(f"--steps {args.steps} has no step for --models {args.models}: {'; '.join(why[s] for s in sorted(steps))}")
    if out.suffix != ".json" or out.name.endswith(".summary.json"):
        parser.error(f"--out must end in .json, not .summary.json (its .md and .summary.json are written beside it), got {out}")
    if not (Path(args.home) / "reelsense.duckdb").exists():
        parser.error(f"{args.home} is not a reelsense home (no reelsense.duckdb): run `reelsense ingest microlens DIR` and extract the titles first")
    # Bases before the re-rankers that re-rank them (lightgbm after lstm-attn), whatever the order given.
    models = sorted(models, key=lambda m: m in NEEDS_BASE)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    code = provenance()
    summary = out.with_suffix(".summary.json")
    source = out if out.exists() else summary  # what the run resumes, for the messages below
    if not out.exists() and not summary.exists() and out.with_suffix(".md").exists():  # probe: a committed table was overwritten
        parser.error(
            f"{out.with_suffix('.md')} is there without the {out.name} or .summary.json of its run: this run would overwrite it; "
            "use another --out, or move it away"
        )
    try:
        results = resumed(out, summary)
    except ValueError as e:
        parser.error(str(e))
    other_code = sorted(
        {
            (st.get("code_version"), st.get("git_commit"))
            for st in results.get("steps", {}).values()
            if st.get("code_version") not in (None, code["code_version"])
        }
    )
    if other_code and args.across_code:  # said, not silent (probe)
        print(f"--across-code: steps of ranker code {', '.join(v for v, _ in other_code)} are kept, and not paired with this code's", flush=True)
    if other_code and not args.across_code:
        was = ", ".join(f"{v} (commit {c or 'not recorded'})" for v, c in other_code)
        parser.error(
            f"{source} holds steps of other ranker code, {was}, than this checkout's {code['code_version']}: they would not pair with "
            f"steps trained now. Resume from a checkout of that commit (git worktree add DIR COMMIT; run this command in DIR with PYTHONPATH=DIR), "
            "use another --out, or pass --across-code"
        )
    for name, base in NEEDS_BASE.items():  # probe: `--models lightgbm` alone wrote an empty table
        # The seeds this run fits `name` with, where neither its step nor its base's is there to re-rank.
        fits = [s for key, s in planned if key == f"main/{name}/seed{s}" and key not in results.get("steps", {})]
        bare = [s for s in fits if base not in models and f"main/{base}/seed{s}" not in results.get("steps", {})]
        if bare:
            where = f"{source} holds no main/{base}/seed{bare[0]} step" if source.exists() else "no earlier run of this --out has its step"
            parser.error(f"--models: {name} re-ranks the {base} of its seed, and {where}: list {base} in --models too")
    had = set(results.get("steps", {}))  # the steps resumed, for the closing line
    results.pop("paired_slices_by_seed", None)  # rebuilt at the end of every run, in the shape of this code
    # What the rankers train with, recorded by each step with its config; the item-tower flags
    # (--id-drop ... --cold-neighbours) reach only the content-first models (`make`).
    overrides = {
        "max_epochs": args.max_epochs,
        "batch": args.batch,
        "patience": args.patience,
        "id_drop": args.id_drop,
        "delta_ratio": args.delta_ratio,
        "content_hidden": args.content_hidden,
        "semantic_codes": args.semantic_codes,
        "cold_neighbours": args.cold_neighbours,
    }
    cold_overrides = {**overrides, "max_epochs": args.cold_max_epochs or args.max_epochs}
    settings = {**overrides, "cold_max_epochs": args.cold_max_epochs, "max_users": args.max_users}  # the run's, for resuming
    before = {**results.get("overrides", {}), "main_seed": results.get("main_seed")}
    for key, value in {**settings, "main_seed": seeds[0]}.items():  # the steps of one JSON are of one set of settings
        if results.get("steps") and key in before and before[key] != value:
            was, now = ("the default" if v is None else v for v in (before[key], value))
            parser.error(f"{source} was run with {key} {was}, not {now}: resume it with the same settings, or use another --out")
    results.setdefault("steps", {})
    command = shlex.join([sys.executable.split("/")[-1], *sys.argv])
    earlier = results.get("commands") or ([results["command"]] if results.get("command") else [])
    results.update(
        {
            "command": command,
            "commands": [*[c for c in earlier if c != command], command],  # probe: the .md named the latest alone
            "machine": f"{platform.node()}, {torch.get_num_threads()} torch threads",
            "max_history": MAX_HISTORY,
            "main_seed": seeds[0],
            "overrides": settings,
            "home": str(Path(args.home).resolve()),
        }
    )

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(out)
        out.with_suffix(".md").write_text(markdown(results))
        # The same with the per-user arrays (tens of MB) packed to their nonzero entries: small
        # enough to commit beside the .md, and enough to resume the run from (`from_summary`).
        tmp = summary.with_suffix(".tmp")
        tmp.write_text(json.dumps(slim(results), indent=1))
        tmp.replace(summary)

    for step, trains in (("cold", COLD), ("seeds", SEEDED)):  # probe: a model a step does not train went unsaid
        left = [m for m in models if m not in trains]
        if step in steps and left and any(m in trains for m in models) and (step == "cold" or seeds[1:]):
            print(f"--steps {step} trains {', '.join(trains)} only, not {', '.join(left)}", flush=True)
    started = time.perf_counter()
    ensure_samples(Warehouse(args.home), MAX_HISTORY)  # build-features, where events changed since
    data = load_dataset(Warehouse(args.home), MAX_HISTORY)
    rows = test_rows(data, max_users=args.max_users, seed=0)
    split = cold_split(data, seed=0)  # the cold-start split and its rows (step 2)
    item_rows, user_rows = item_cold_rows(data, split), user_cold_rows(data, split)
    if args.max_users is not None:  # the sampled test users' rows only, as in the main step (probe: it ranked every user)
        sampled = np.isin(data.queries.users, data.queries.users[rows])
        item_rows = {s: r[sampled[r]] for s, r in item_rows.items()}
        user_rows = {k: r[sampled[r]] for k, r in user_rows.items()}
    cold_rows = np.concatenate([*item_rows.values(), *user_rows.values()])
    shape = {
        "users": int(len(np.unique(data.queries.users))),
        "items": data.n_items,
        "rows": int(len(data.targets)),
        "content": data.content_source,
        "test_users": int(len(rows)),
        "test_rows_sha1": hashlib.sha1(np.ascontiguousarray(data.targets[rows]).tobytes() + rows.tobytes()).hexdigest()[:12],
        "cold_rows": int(len(cold_rows)),
        "cold_rows_sha1": hashlib.sha1(cold_rows.tobytes()).hexdigest()[:12],  # review: a resume must rank the same cold rows
    }
    earlier = {k: v for k, v in results.get("data", {}).items() if k in shape}
    ranked = [len(st["ndcg10_per_user"]["unmasked"]) for k, st in results["steps"].items() if k.startswith("main/") and "ndcg10_per_user" in st]
    if ranked and "test_users" not in earlier:  # a JSON of the older harness: its steps say how many users they ranked
        earlier["test_users"] = ranked[0]
    cold_steps = [st["ndcg10_per_user"] for k, st in results["steps"].items() if k.startswith("cold/") and "ndcg10_per_user" in st]
    cold_ranked = [sum(len(v["unmasked"]) for v in per_user.values()) for per_user in cold_steps]
    if cold_ranked and "cold_rows" not in earlier:  # the same for its cold steps (before --max-users sampled them, they ranked every user)
        earlier["cold_rows"] = cold_ranked[0]
    if results["steps"] and earlier != {k: shape[k] for k in earlier}:  # paired steps must rank the same test rows
        changed = "; ".join(f"{k} {earlier[k]}, now {shape[k]}" for k in earlier if earlier[k] != shape[k])
        parser.error(f"{source} was run on other data or test users ({changed}): use another --out")
    results["data"] = {**shape, "load_seconds": round(time.perf_counter() - started, 1)}
    trained: dict[tuple[str, int], object] = {}  # (name, seed) -> the re-rankers' bases (lightgbm: lstm-attn)
    kept = out.with_suffix(".models")  # the bases' checkpoints, so that a resumed run can still fit their re-rankers

    def unfinished(key: str) -> Path:
        """Where the fit of step `key` keeps its state after each epoch, until the step is saved."""
        return kept / f"{key.replace('/', '-')}.unfinished.pt"

    def warm_step(name: str, seed: int) -> None:
        """Fit `name` with `seed` and rank every test user, unless the JSON has the step already."""
        key = f"main/{name}/seed{seed}"
        if key in results["steps"]:
            return
        base = NEEDS_BASE.get(name)
        if base and (base, seed) not in trained:
            checkpoint, base_step = kept / f"{base}-seed{seed}.pt", results["steps"].get(f"main/{base}/seed{seed}")
            if base_step is None:
                print(f"{key}: skipped: {name} re-ranks {base}, which has no step of seed {seed} here: list {base} in --models", flush=True)
                return
            if not checkpoint.exists() or base_step.get("code_version") != code["code_version"]:
                why = f"no checkpoint of it in {kept}" if not checkpoint.exists() else "its step is of other ranker code"
                print(
                    f"{key}: skipped: {name} re-ranks {base}, and {why}: remove main/{base}/seed{seed} from the JSON and its summary to fit both again",
                    flush=True,
                )
                return
            trained[base, seed] = make(base, overrides)
            trained[base, seed].load(checkpoint, data)
        model = make(name, overrides, {base: trained[base, seed]} if base else None)
        results["steps"][key] = fit_and_evaluate(key, model, data, rows, seed, unfinished(key), code)
        if base:
            results["steps"][key]["base_step"] = f"main/{base}/seed{seed}"  # the fit it re-ranks
        if name in NEEDS_BASE.values():
            trained[name, seed] = model  # a re-ranker's base: kept for it, and on disk for a resumed run
            kept.mkdir(parents=True, exist_ok=True)
            model.save(kept / f"{name}-seed{seed}.pt")
        paired(results, seed)  # the .md pairs each step as it lands (a run may stop for hours before the next)
        save()
        discard(unfinished(key))

    for name in models if "main" in steps else []:  # 1. every model, the first seed
        warm_step(name, seeds[0])

    # 2. cold start (the split and its rows: above)
    for name in [m for m in COLD if m in models and "cold" in steps]:
        key = f"cold/{name}/seed{seeds[0]}"
        if key in results["steps"]:
            continue
        model = make(name, cold_overrides)
        step = fit(model, split.train_data, seeds[0], unfinished(key), code)
        t = time.perf_counter()
        slices = {**item_rows, **{f"new_users_{k}": rows_ for k, rows_ in user_rows.items()}}
        slice_ranks = {s: ranks_by_protocol(model, data, rows_, data.queries.take(rows_)) for s, rows_ in slices.items()}
        step["item_cold"] = {s: {p: ranking_metrics(r, seed=0) for p, r in slice_ranks[s].items()} for s in item_rows}
        step["user_cold"] = {str(k): {p: ranking_metrics(r, seed=0) for p, r in slice_ranks[f"new_users_{k}"].items()} for k in user_rows}
        # Per-user NDCG@10 of every slice, so that models are compared on the same users (paired).
        step["ndcg10_per_user"] = {s: {p: ndcg(r, 10).tolist() for p, r in by_protocol.items()} for s, by_protocol in slice_ranks.items()}
        step["eval_seconds"] = round(time.perf_counter() - t, 1)
        results["steps"][key] = step
        paired_cold(results, seeds[0])  # as the warm steps are paired: as each lands
        save()
        discard(unfinished(key))
        print(
            f"{key}: item-cold HR@10 {step['item_cold']['cold_targets']['unmasked'].get('hr@10', 0):.4f} vs warm "
            f"{step['item_cold']['warm_targets']['unmasked'].get('hr@10', 0):.4f}",
            flush=True,
        )

    # 3. More seeds: sasrec's and sasrec-content's first, the claims rest on them (a run that
    # spans sessions has them before lstm-attn's hour-long fits).
    for group in (CLAIMS, [m for m in SEEDED if m not in CLAIMS]) if "seeds" in steps else ():
        for seed in seeds[1:]:
            for name in [m for m in group if m in models]:
                warm_step(name, seed)
    for seed in seeds:
        paired(results, seed)
    paired_slices(results, warm_slices(data, rows), len(rows))
    paired_cold(results, seeds[0])
    save()
    new = len(results["steps"]) - len(had & set(results["steps"]))
    resumed_from = f", {len(had)} resumed from {source}" if had else ""
    print(f"{new} step{'s' * (new != 1)} run now{resumed_from}; the tables: {out.with_suffix('.md')}", flush=True)


def paired(results: dict, seed: int) -> None:
    """Each model of the JSON against sasrec trained with the same seed, over the same test users;
    rebuilt from the steps each time, so a step rerun on other code loses its old pair."""
    by_seed = results.setdefault("paired_vs_sasrec_by_seed", {})
    by_seed.pop(str(seed), None)
    ref, others = pairable(results, seed)
    if ref is None:
        return
    table = by_seed.setdefault(str(seed), {})
    theirs = {p: np.asarray(ref["ndcg10_per_user"][p]) for p in PROTOCOLS}
    for name, step in others.items():
        # NDCG@10 per user is a function of the rank: compare the stored per-user values directly.
        table[name] = compare_to_values(theirs, {p: np.asarray(step["ndcg10_per_user"][p]) for p in PROTOCOLS}, seed=0)


def paired_cold(results: dict, seed: int) -> None:
    """The cold-start slices, each model against sasrec on the same rows (paired bootstrap)."""
    steps = results["steps"]
    ref_step = steps.get(f"cold/{REFERENCE}/seed{seed}", {})
    ref = ref_step.get("ndcg10_per_user")
    results.pop("paired_cold_vs_sasrec", None)  # rebuilt from the steps, as the warm pairs are
    if ref is None:
        return
    out = results.setdefault("paired_cold_vs_sasrec", {})
    for key, step in steps.items():
        name = key.split("/")[1]
        same_code = step.get("code_version") == ref_step.get("code_version")
        if key.startswith("cold/") and key.endswith(f"/seed{seed}") and name != REFERENCE and "ndcg10_per_user" in step and same_code:
            # A slice without rows (a --max-users sample may hold no withheld user) has nothing to pair.
            out[name] = {
                s: compare_to_values({p: np.asarray(v) for p, v in ref[s].items()}, {p: np.asarray(v) for p, v in by_protocol.items()}, seed=0)
                for s, by_protocol in step["ndcg10_per_user"].items()
                if len(by_protocol["unmasked"]) or len(ref[s]["unmasked"])  # a mismatch of rows raises in the pairing
            }


def compare_to_values(reference: dict, values: dict, *, seed: int) -> dict:
    from ranker.evaluate import paired_bootstrap

    return {p: paired_bootstrap(values[p], reference[p], seed=seed) for p in PROTOCOLS}


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print(
            "interrupted: every finished step is in the JSON and its summary, a fit under way in its last finished epoch; run the same command again to resume",
            file=sys.stderr,
        )
        sys.exit(130)
