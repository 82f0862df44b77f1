"""analyze (Prefect flow; `reelsense report`, and the last step of `reelsense demo`).

Reads a score-batch run (`scores`), the rankers, `samples` (rebuilt first when events changed),
`events` (history ages), `embeddings` and the `item_tags` view;
writes `explanations` (one row per scored pair: attention, modality contributions, LightGBM
feature contributions, a summary in words) and a static report folder per run,
`<home>/reports/<run>/`: index.html, one page per user under users/, PNG plots under plots/, and
JSON files (report.json, profiles.json, interest_shifts.json; shifts.json with precision / recall /
F1 against the planted shifts when the sample's truth.json is given); `<home>/reports/index.html`
lists the runs' reports. An unknown run id is an error that writes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.arguments import (
    changed_inputs,
    check_pair,
    check_pair_runs,
    check_run,
    content_steps,
    idle_user_error,
    quarantine_reason,
    ranking_inputs,
)
from flows.console import run_option, say
from flows.explainers import load_explainers, unaligned_in_use
from flows.rank import current_samples
from flows.report import run_dir, run_folder, write_report, write_runs_index
from flows.report_rankers import rescore_command
from flows.score import find_misfit, model_version
from ranker.base import device_for
from ranker.data import MAX_HISTORY, Dataset, Queries, load_dataset, modality_vectors
from ranker.explain import explain_pairs, label, profile_words, step_ages
from ranker.names import REPORT_PAGES
from ranker.scoring import current_queries
from ranker.shifts import ShiftConfig, match_shifts, user_shifts
from warehouse import db, store
from warehouse.errors import ReelsenseError
from warehouse.schemas import EXPLANATIONS, SCORES
from warehouse.store import Warehouse

SHIFT_TOLERANCE = 5  # interactions between a detected and a planted shift that still count as a match


def modality_lines(row: dict[str, Any]) -> list[str]:
    """explain's table of modality contributions, or one line where the item has no content vector."""
    if not any(v is not None and np.isfinite(v) for v in row["modality_contributions"]):
        return ["modality contributions: none (the item has no content vector, so there is nothing to leave out)"]
    lines = ["modality contributions (score lost when left out; the item's fusion weight):"]
    for name, value, fusion in zip(row["modality_names"], row["modality_contributions"], row["fusion_weights"] or []):
        shown = f"{value:+.3f}" if value is not None and np.isfinite(value) else "     -"
        # Probe: a value stood unlabelled for a modality the item lacks; it comes from the history alone.
        lacks = "  (the item has none: the history's change alone)" if not fusion and shown.strip() != "-" else ""
        lines.append(f"  {name:<8} {shown}   fusion weight {fusion:.2f}{lacks}")
    return lines


def item_tags(wh: Warehouse) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for r in db.analysis(wh, "item_tag_lists").to_pylist():
        out.setdefault(r["item_id"], {})[r["kind"]] = r["tags"]
    return out


def history_ages(wh: Warehouse, queries: Queries, data: Dataset) -> np.ndarray:
    """(Q, T) seconds between each history step's latest interaction and the user's latest event."""
    rows = db.analysis(wh, "last_interactions", {"users": [str(u) for u in queries.users]}).to_pylist()
    return step_ages(queries, data.item_ids, {(r["user_id"], r["item_id"]): r["ts"] for r in rows})


def explain_for(wh: Warehouse, data: Dataset, model, ctr, pairs: list[tuple[str, str]]) -> list[dict]:
    """Explanations of (user, item) pairs against each user's current history."""
    queries = current_queries(data)
    row_of = {u: i for i, u in enumerate(queries.users)}
    index = {item: i for i, item in enumerate(data.item_ids) if i}
    unknown = [f"user {u!r}" for u, _ in pairs if u not in row_of] + [f"item {i!r}" for _, i in pairs if i not in index]
    if unknown:
        raise ReelsenseError(
            f"cannot explain: unknown {', '.join(sorted(set(unknown))[:5])} (a user needs at least one "
            "positive interaction in `events`, an item a row in `items` or `events`)"
        )
    if not pairs:
        return []
    rows_q = np.asarray([row_of[u] for u, _ in pairs], np.int64)
    items = np.asarray([index[i] for _, i in pairs], np.int64)
    users_q, pair_user = np.unique(rows_q, return_inverse=True)  # a user's pairs share one history
    ages = history_ages(wh, queries.take(users_q), data)[pair_user]
    rows = explain_pairs(model, data, queries.take(rows_q), items, modalities=modality_vectors(wh, data), item_tags=item_tags(wh), history_age_s=ages, ctr=ctr)
    version = f"lstm-attn@{model.version}" + (f"+lightgbm@{ctr.version}" if ctr is not None else "")
    return [{**r, "model_version": version} for r in rows]


@task(name="explain-scores", cache_policy=NO_CACHE)
def explain_scores(home: str, run_id: str, device: str, scored_by: str | None = None) -> tuple[list[dict], Dataset]:
    wh = Warehouse(home)
    data = load_dataset(wh, MAX_HISTORY)
    scored = db.analysis(wh, "run_pairs", {"run": run_id}).to_pylist()
    model, ctr = load_explainers(wh, unaligned_in_use(data, [s["item_id"] for s in scored]), device, scored_by, run_id)
    rows = explain_for(wh, data, model, ctr, [(s["user_id"], s["item_id"]) for s in scored])
    if rows:
        # Replaced, not appended: a report after new events explains from the new histories, and the
        # table keeps what the page shows (probe: the page said 4 #gaming videos, `explain` the 3 stored).
        store.replace(wh, EXPLANATIONS, pa.Table.from_pylist([{**r, "run_id": run_id} for r in rows]))
        db.refresh_views(wh)
    return rows, data


UNRECORDED_NOTE = (
    "scored before runs kept a record of the data they ranked from, so whether events, items or content vectors "
    "changed since is not known; the report explains each pair from the current data"
)


def stale_warning(wh: Warehouse, run_id: str, *, name: str, changed: str, data: Dataset, version: str | None = None) -> str:
    """What to warn of a report of `run_id` where `changed` ("histories", "items": `changed_inputs`)
    since it was ranked; "" where nothing did. `version`: of the run's model `name`, said where the
    rescore would use another. Probe: it claimed changed histories where only an item had been
    added, and its command left out the run's --k."""
    if not changed:
        return ""
    command, users, everyone, named = rescore_command(wh, name, run_id, data)
    what = (
        "the histories or engaged items it ranked from (`samples`, built from `events`) changed since, so its report explains each "
        "pair from the current histories, which can differ from those it was ranked from"
        if changed == "histories"
        else "the items (`items`, or items only `events` name) or their content vectors changed since, not the histories, so its "
        "report explains each pair with the current items and vectors"
    )
    users_note = f" (it scored {len(users)} of {everyone} users; this command scores every user)" if 0 < len(users) < everyone and not named else ""
    rescore = f"`{command}` scores it again from the current data{users_note}"
    try:  # probe: a popularity run's advice failed after a new item: its latest model did not fit the data
        latest = model_version(wh, name, None)
        misfit = find_misfit(wh, name, latest)
    except ReelsenseError as exc:  # no trained version of it left
        latest, misfit = None, exc
    if misfit is not None:
        rescore = f"no {name} fits the current data ({misfit}): `reelsense train --models {name}`, then {rescore}"
    elif version and latest != version:  # probe 48: run as printed, it rescored with the latest version, unsaid
        try:
            keeps = find_misfit(wh, name, version) is None
        except ReelsenseError:  # the run's version is gone
            keeps = False
        rescore += f" with the latest {name}, {latest} (the run was scored by {version}" + (f"; `--version {version}` keeps that one)" if keeps else ")")
    return f"run {run_id} was ranked from other data than the warehouse holds now: {what}; {rescore}"


@flow(name="analyze", log_prints=True)
def analyze(
    home: str,
    run_id: str | None = None,
    truth_path: str | None = None,
    max_plot_users: int = 40,
    device: str = "auto",
    max_pages: int = REPORT_PAGES,
    shift_config: ShiftConfig = ShiftConfig(),
) -> dict[str, Any]:
    wh = Warehouse(home)
    # A shared hold on the runs: prune and `score --replace` wait until this report is published,
    # so they never remove a run whose report or explanations are still being written.
    with store.runs_lock(wh, exclusive=False):
        started = time.perf_counter()
        run = check_run(wh, run_id)
        run_id = run["run_id"]
        current_samples(home)
        made = store.partition_record(wh, SCORES, run_id)
        changed = changed_inputs(made["ranked_from"], ranking_inputs(wh)) if made is not None else ""
        try:
            explanations, data = explain_scores(home, run_id, device_for(device), run["model_version"])
        except ReelsenseError:  # review: a failure here hid that the run's data had changed
            if changed:
                what = "the histories or engaged items" if changed == "histories" else "the items or their content vectors"
                again = f"reelsense score --model {run['model_version'].split('@')[0]} {run_option(run_id)} --replace"
                say(
                    f"run {run_id} was ranked from other data than the warehouse holds now ({what} changed since); "
                    f"`{again}` (with the --k and --users it was scored with) scores it again from the current data",
                    logging.WARNING,
                )
            raise
        name, _, version = run["model_version"].partition("@")
        stale = stale_warning(wh, run_id, name=name, changed=changed, data=data, version=version)
        if stale:  # in the log, the summary line and, for whoever opens the report later, atop its page
            say(stale, logging.WARNING)
        elif made is None:
            say(f"run {run_id}: {UNRECORDED_NOTE}")
        tags = item_tags(wh)
        truth = json.loads(Path(truth_path).read_text()) if truth_path else None
        profiles: dict[str, dict[str, list]] = {}
        for r in db.analysis(wh, "profiles", {"top": 5}).to_pylist():
            profiles.setdefault(r["user_id"], {}).setdefault(r["kind"], []).append((r["tag"], r["share"]))
        shifts = user_shifts(data, tags, truth, shift_config)
        summary: dict[str, Any] = {"run_id": run_id, "explanations": len(explanations), "users": len(shifts)}
        summary["data_changed"] = changed or ("none" if made else "unknown")  # changed: "histories" or "items"
        with run_folder(wh, run_id) as report_dir:
            (report_dir / "plots").mkdir(parents=True, exist_ok=True)
            if truth is not None:
                metrics = match_shifts(
                    {u: s["planted"] for u, s in shifts.items()}, {u: [x["index"] for x in s["shifts"]] for u, s in shifts.items()}, SHIFT_TOLERANCE
                )
                metrics.update(
                    window=shift_config.window,
                    alpha=shift_config.alpha,
                    permutations=shift_config.permutations,
                    seed=shift_config.seed,
                    tolerance_unit="positive interactions",
                    users=len(shifts),
                )
                (report_dir / "shifts.json").write_text(json.dumps(metrics, indent=1))
                summary["shifts"] = metrics
            (report_dir / "profiles.json").write_text(json.dumps({u: {"words": profile_words(p), "tags": p} for u, p in profiles.items()}, indent=1))
            (report_dir / "interest_shifts.json").write_text(
                json.dumps({u: {k: v for k, v in s.items() if k not in ("drift", "item_ids")} for u, s in shifts.items()}, indent=1)
            )
            groups_of = (lambda item: truth["items"].get(item, "?")) if truth else (lambda item: label(tags.get(item, {})))
            summary["pages"] = write_report(
                wh,
                report_dir,
                data=data,
                explanations=explanations,
                profiles=profiles,
                shifts=shifts,
                tags=tags,
                groups_of=groups_of,
                max_plot_users=max_plot_users,
                run_id=run_id,
                max_pages=max_pages,
                warning=stale,
                note="" if made else f"This run was {UNRECORDED_NOTE}.",
            )
            (report_dir / "report.json").write_text(
                json.dumps(
                    {
                        "run_id": run_id,
                        "model_version": run["model_version"],
                        "scored_at": run["scored_at"].isoformat(),
                        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "explanations": summary["explanations"],
                        "pages": summary["pages"],
                        # None: a run scored before runs kept what they ranked from (legacy)
                        "ranked_from_current_data": None if made is None else not changed,
                    },
                    indent=1,
                )
            )
        summary["report"] = str(run_dir(wh, run_id) / "index.html")
        write_runs_index(wh)
        summary["seconds"] = round(time.perf_counter() - started, 1)
        get_run_logger().info("analyze: %s", {k: v for k, v in summary.items() if k != "shifts"})
        return summary


def refuse_unscorable(wh: Warehouse, data: Dataset, user: str, item: str) -> None:
    """ReelsenseError where `item` has no content vector: lstm-attn, which explains, scores it -inf,
    and a "why" of its attention would explain a score it never gives (probe: it explained first and
    said so after). An item whose row has no title and no media has nothing to embed: extract and
    align cannot help it (probe: they were the advice)."""
    index = data.item_ids.index(item)
    if not data.scorable[index]:
        from extractors.pipeline import has_title  # the extraction stack: only on this error path

        fused = data.content_source.startswith("fused:")
        cannot = f"cannot explain item {item!r} for user {user!r}"
        unscored = "so lstm-attn (which explains, and ranks items by their content) cannot score it"
        if item in data.unaligned:  # extracted since align-items ran (probe: told to ingest and extract it again)
            raise ReelsenseError(
                f"{cannot}: it has raw embeddings but no {data.content_source} vector yet, {unscored}; run `reelsense align` (it projects it "
                "with the trained alignment), then explain it"
            )
        media = db.analysis(wh, "item_media", {"item": item}).to_pylist()
        if media and not has_title(media[0]["title"]) and not media[0]["video_uri"] and not media[0]["audio_uri"]:
            raise ReelsenseError(
                f"{cannot}: it has no content vector, {unscored}, and the runs of content rankers leave it out; its row in `items` has no title, "
                "video or audio, so there is nothing to embed: ingest its row again with a title or media (`reelsense ingest items "
                "FILE`), then run `reelsense extract`" + (" and `reelsense align`" if fused else "")
            )
        if held := quarantine_reason(wh, item):  # probe 48: the generic advice came first, and the quarantine only as an aside
            raise ReelsenseError(
                f"{cannot}: it has no content vector, {unscored}: {held}" + ("; once extracted, `reelsense align` projects it" if fused else "")
            )
        if data.content_source == "none":  # no item has one: the warehouse's way there, and the lstm-attn that explains (review 51)
            raise ReelsenseError(f"{cannot}: no item has a content vector yet, {unscored}: {content_steps(wh)}, then `reelsense train --models lstm-attn`")
        steps = "`reelsense ingest items FILE` (where it has no row in `items`), `reelsense extract`" + (", then `reelsense align`" if fused else "")
        raise ReelsenseError(f"{cannot}: it has no content vector, {unscored}, and the runs of content rankers leave it out; {steps} give it one")


def ranked_by_another(model_version: str | None, explained_by: str) -> str:
    """ " (ranked by popularity@V; ...)" where a run was ranked by a model other than the ones that
    explain it (`explained_by`, "lstm-attn@V+lightgbm@L") (probe: the explanation of a popularity run
    named lstm-attn alone, and read as the reasons popularity ranked the item; a lightgbm run explained
    by newer versions did not say so); "" for a run its explainers scored, or an unknown run."""
    if not model_version or model_version in explained_by.split("+"):
        return ""
    if model_version.partition("@")[0] in ("lstm-attn", "lightgbm"):  # its own versions are gone or no longer fit
        return f" (ranked by {model_version}, which cannot explain it now; explained by the model named at the end of this line)"
    return f" (ranked by {model_version}; explained by the model named at the end of this line, which explains the runs of every ranker)"


def explain_lines(wh: Warehouse, user: str, item: str, *, run_id: str | None = None, device: str = "auto") -> list[str]:
    """`reelsense explain`: the stored explanation of a scored pair, or one computed now."""
    known = check_pair(wh, user, item)
    # Without --run-id: the newest run that scored the pair. An older run's stored explanation is not
    # shown in its place (probe, 2026-12-02: it was, with no word that a newer run existed).
    runs = check_pair_runs(wh, user, item, run_id)
    wanted = run_id if run_id is not None else (runs[0]["run_id"] if runs and runs[0]["explained"] else None)
    stored = db.analysis(wh, "stored_explanation", {"user": user, "item": item, "run": wanted}).to_pylist() if wanted else []
    if stored:
        row, source = stored[0], f"scored in run {stored[0]['run_id']}"
        source += ranked_by_another(next((r["model_version"] for r in runs if r["run_id"] == row["run_id"]), None), row["model_version"])
    elif run_id is not None:  # a run that scored the pair (check_pair_runs), with nothing stored
        raise ReelsenseError(
            f"run {run_id!r} has no explanation for user {user!r} and item {item!r} yet; `reelsense report {run_option(run_id)}` "
            "stores them, or leave out --run-id for the newest run that scored the pair (computed now where it has none stored)"
        )
    else:
        current_samples(str(wh.home))
        data = load_dataset(wh, MAX_HISTORY)
        if user not in set(current_queries(data).users):  # before any model loads (probe: such a user was called unknown)
            raise idle_user_error(user)
        refuse_unscorable(wh, data, user, item)
        scored_by, newest_run = (runs[0]["model_version"], runs[0]["run_id"]) if runs else (None, None)
        model, ctr = load_explainers(wh, unaligned_in_use(data, [item]), device_for(device), scored_by, newest_run)
        row = explain_for(wh, data, model, ctr, [(user, item)])[0]
        source = "computed now: no stored explanation of this pair" + (
            "" if known["engaged"] else ": no run scored it, and reports store explanations only of the pairs a run scored"
        )  # probes: scoring never serves an engaged item, so no report will store its explanation; nor one of a pair no run scored
        # (probe, 2026-12-06: a `reelsense report` hint there read as a way to store it; no report does)
        if runs:  # scored, but the newest run that scored it has no explanation stored
            older = next((r["run_id"] for r in runs if r["explained"]), None)
            ranked = ranked_by_another(runs[0]["model_version"], row["model_version"])
            source = (
                f"computed now: run {runs[0]['run_id']}, the newest to score this pair{ranked}, has no stored "
                f"explanation (`reelsense report {run_option(runs[0]['run_id'])}` stores them)"
                + (f"; run {older}'s is shown by `{run_option(older)}`" if older else "")
            )
    tags = item_tags(wh)
    lines = [
        f"user {user}, item {item} ({label(tags.get(item, {}))}); {source}; model {row['model_version']}",
        "",
        "Why: " + row["summary"],
        "",
        "attention over the history (newest last; weights sum to 1):",
    ]
    if known["engaged"]:  # probe: read as a recommendation of an item the user already has
        engaged = f"{known['engaged']} {'event' if known['engaged'] == 1 else 'events'}"
        since = "score runs made since leave it out, so read this as the model's score, not a recommendation"
        note = f"Note: {user} already engaged with {item} ({engaged}); {since}."
        lines[1:1] = ["", note]
    for hist_item, weight in zip(row["history_item_ids"], row["attention"]):
        lines.append(f"  {hist_item:<14} {label(tags.get(hist_item, {})):<18} {weight:6.3f} {'#' * int(round(weight * 40))}")
    lines += ["", *modality_lines(row)]
    if row.get("feature_names"):
        lines += ["", "LightGBM feature contributions (pred_contrib, log-odds):"]
        lines += [f"  {n:<18} {v:+.3f}" for n, v in zip(row["feature_names"], row["feature_contributions"])]
    return lines
