"""The report's "Rankers" section, and the rescoring advice that reports and warnings give.

The section shows the last `reelsense evaluate` (`<home>/reports/results.json`): each model's
NDCG@10 and HR@10 under both protocols, its paired difference to sasrec, and a warning where those
are not the models that scored the run, with the command that measures or rescores it. Reads the
model registry and the `scores` table (a run's users and --k); writes nothing. Called by
flows/report.py (the run's index.html) and flows/analyze.py (a stale run's warning).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from flows.arguments import run_k
from flows.console import (
    comma_names,
    older_code_note,
    other_base_note,
    run_option,
    runnable,
    same_evaluation,
    settings_text,
    unpaired_note,
    users_option,
    vs_reference,
)
from flows.latest import latest_meta
from ranker import artifacts
from ranker.data import Dataset
from ranker.names import TOP_K
from ranker.scoring import current_queries
from warehouse import db, store
from warehouse.schemas import SCORES
from warehouse.store import Warehouse


def rescore_command(wh: Warehouse, name: str, run_id: str, data: Dataset, *, listed: int = 20) -> tuple[str, list[str], int, bool]:
    """The `reelsense score` that rescores `run_id` with the run's --k (kept beside its rows; its
    largest rank where a run of before 2026-12-07 keeps none) and users (probe, 2026-12-03: a bare
    `--replace` rescored a 3-user run over every user with k 20), with the run's users, how many
    users `score` picks by default, and whether the command names the run's users: it does where the
    run scored fewer than that, at most `listed` of them, each passable by --users (no comma, no
    spaces at its ends)."""
    rows = db.analysis(wh, "run_users", {"run_id": run_id}).to_pylist()
    command = f"reelsense score --model {name} {run_option(run_id)} --replace"
    kept = run_k(store.partition_record(wh, SCORES, run_id), max((r["kept"] for r in rows), default=TOP_K))
    if kept != TOP_K:
        command += f" --k {kept}"
    users = [r["user_id"] for r in rows]
    everyone = len(current_queries(data))
    named = users_option(users, listed=listed) if 0 < len(users) < everyone else ""
    return command + named, users, everyone, bool(named)


def rescore_advice(wh: Warehouse, name: str, run_id: str, data: Dataset, *, listed: int = 20) -> str:
    """HTML: `rescore_command`, and where it cannot name the run's users, the query that lists them.
    Runs do not record --retrieval or --candidates."""
    command, users, everyone, named = rescore_command(wh, name, run_id, data, listed=listed)
    unnamed = 0 < len(users) < everyone and not named  # a run of some users
    advice = f"<code>{html.escape(command)}</code> rescores it with the latest"
    if unnamed and not all(comma_names(u) == [u] for u in users):  # what --users can pass (review: split_users raised on 'a,')
        advice += (
            f"; the run scored {len(users)} of {everyone} users, and some of their ids hold a comma or spaces at their ends, "
            "which <code>--users</code> cannot pass: this command scores every user"
        )
    elif unnamed:  # more than `listed`
        advice += (
            f"; the run scored {len(users)} of {everyone} users: without <code>--users</code> naming them "
            f"(<code>{html.escape(db.run_users_command(run_id))}</code> lists them: run it before <code>--replace</code> deletes the run's rows) "
            "it scores every user"
        )
    return advice + " (add the <code>--retrieval</code> and <code>--candidates</code> it was scored with, if not the defaults: runs do not record them)"


def other_models_note(wh: Warehouse, results: dict[str, Any], run_id: str, data: Dataset) -> str:
    """'' when the last `reelsense evaluate` (results.json) measured the model version that scored
    `run_id`; else a paragraph saying that the table is of other models (probe, 2026-12-02: a run
    scored after retraining on new data showed the older models' table without a word), and what
    measures the run's model. `data`: the warehouse's data now."""
    versions = db.analysis(wh, "run_models", {"run_id": run_id}).to_pylist()  # one per run (flows/score.py)
    if not versions:
        return ""
    name, _, version = versions[0]["model_version"].partition("@")
    measured = results.get("models", {}).get(name, {}).get("version")
    if measured == version:
        return ""
    held = f"{name} version {measured}" if measured else f"no {name}"
    damaged: artifacts.ModelMismatch | None = None
    try:
        latest = (latest_meta(wh.models_dir, name) or {}).get("version")
    except artifacts.ModelMismatch as exc:
        latest, damaged = None, exc
    if damaged is not None:  # review: it said "no NAME is saved now" of saved versions
        advice = f"no {html.escape(name)} is the latest now: {html.escape(str(damaged))}."
    elif latest is None:
        advice = f"no {html.escape(name)} is saved now: <code>reelsense train --models {html.escape(name)}</code> trains one."
    elif latest != version:  # probe, 2026-12-03: it blamed an older --version where a retrain had come since
        advice = (
            f"<code>reelsense evaluate</code> measures the latest trained models ({html.escape(name)} {html.escape(latest)}), which did not score this run; "
            f"{rescore_advice(wh, name, run_id, data)}."
        )
    else:
        try:  # evaluate's own checks (probe, 2026-12-03: the advice below failed where new events had arrived)
            artifacts.check_with_base(wh.models_dir, name, data, version=version)
            # With that evaluation's seed and sample (probe: without them its other rows were dropped).
            again = html.escape(f"reelsense evaluate --models {name}{same_evaluation(results)}")
            advice = f"that evaluation did not measure this version: <code>{again}</code> measures it."
        except artifacts.ModelMismatch as exc:
            advice = f"that evaluation did not measure this version, and <code>reelsense evaluate</code> would refuse it now: {html.escape(str(exc))}"
    return (
        f"<p class=warn>Not the models of this run: run {html.escape(run_id)} was scored by {html.escape(name)} version "
        f"{html.escape(version)}, and this table, from the last <code>reelsense evaluate</code> (of the data with fingerprint "
        f"{html.escape(str(results.get('data_fingerprint', '?'))[:8])}), holds {html.escape(held)}; {advice}</p>"
    )


def results_table(results: dict[str, Any], home: Path) -> str:
    head = (
        "<tr><th>model</th><th>NDCG@10</th><th>95% CI</th><th>HR@10</th><th>NDCG@10, history masked</th>"
        "<th>vs sasrec (paired 95% CI)</th><th>AUC (sampled)</th><th>training seed</th><th>settings other than the defaults</th></tr>"
    )
    body = ""
    for name, r in results["models"].items():
        o, m = r["unmasked"]["overall"], r["masked"]["overall"]
        ci = o.get("ndcg@10_ci95") or [float("nan")] * 2
        vs_text = vs_reference(name, r, "unmasked")
        shown = f"{name} *" if name in results.get("kept_from_earlier", []) else name
        body += (
            f"<tr><td>{html.escape(shown)}</td><td>{o['ndcg@10']:.4f}</td><td>{ci[0]:.4f}-{ci[1]:.4f}</td>"
            f"<td>{o['hr@10']:.4f}</td><td>{m['ndcg@10']:.4f}</td><td>{vs_text}</td><td>{r['ctr_sampled']['auc']:.4f}</td>"
            f"<td>{'-' if r.get('train_seed') is None else r['train_seed']}</td><td>{html.escape(settings_text(r.get('train_settings')))}</td></tr>"
        )
    return (
        f"<p class=muted>{html.escape(str(results.get('dataset', '')))}; {html.escape(results.get('evaluation', ''))}; "
        f"<code>{html.escape(results.get('command', ''))}</code></p><table>{head}{body}</table>"
        + ("<p class=muted>* kept from an earlier evaluate of the same data, seed and users</p>" if results.get("kept_from_earlier") else "")
        + "".join(f"<p class=muted>{html.escape(note)}</p>" for note in (unpaired_note(results), other_base_note(results), older_code_note(results)) if note)
        + _moved_note(results, home)
    )


def _moved_note(results: dict[str, Any], home: Path) -> str:
    """Probe: a copied home's report named the original home and its evaluate command, which would act there."""
    ran = results.get("home")
    if not ran or Path(ran) == home.resolve():
        return ""
    return (
        f"<p class=warn>Evaluated in {html.escape(ran)}, another path than this home's (copied, moved or mounted elsewhere): "
        f"a path the lines above name is that one; {runnable('<code>reelsense evaluate</code>', markup=True)} evaluates here.</p>"
    )
