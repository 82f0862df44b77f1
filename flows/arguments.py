"""Checks of command arguments that need neither torch nor Prefect, so the CLI refuses a bad
argument in a fraction of a second, before it imports a flow (importing one takes 3-4 s on 2 cores).
Some ask the warehouse (the runs, users and pairs a command names; DuckDB only). The flows call
the same checks for callers that skip the CLI, except `replace_warning`, which the CLI prints."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from flows.console import comma_names, count
from ranker.data import stale_samples
from ranker.names import ALL_MODELS, RETRIEVALS, check_rankers
from warehouse import db, store
from warehouse.errors import ReelsenseError
from warehouse.schemas import EMBEDDINGS, ITEMS, SCORES
from warehouse.store import Warehouse

# What makes an interaction positive (warehouse/sql/features/sequences.sql), as refusals say it.
POSITIVE = "a like, comment, share, or a watch of at least half (a watch without a watch_ratio counts as whole)"


def check_arguments(model: str, k: int, n_candidates: int, run_id: str | None = None, retrieval: str = RETRIEVALS[0], replace: bool = False) -> None:
    """Refuse score arguments no run can use."""
    check_rankers([model])
    if replace and run_id is None:
        raise ReelsenseError("--replace starts an existing run over and needs the run's --run-id; without one, a new run is started anyway (drop --replace)")
    if retrieval not in RETRIEVALS:
        raise ReelsenseError(f"unknown retrieval {retrieval!r}; pass --retrieval {' or '.join(RETRIEVALS)}")
    if k < 1:
        raise ReelsenseError(f"need k of 1 or more, got k={k}; pass --k 1 or more")
    if retrieval == "similarity" and n_candidates < k:
        raise ReelsenseError(f"need k <= candidates, got k={k}, candidates={n_candidates}; pass --candidates at least --k")
    if run_id is not None and not store.partition_value_ok(run_id):
        raise ReelsenseError(
            f"run id {run_id!r} cannot name the run's folder in `scores` and `explanations`; use letters, digits, '_', '-' or '.', "
            "at most 200 characters, not ending in .parquet, .tmp or .json"
        )


def check_keep_runs(keep: int) -> None:
    """Refuse a prune that would keep no run."""
    if keep < 1:
        raise ReelsenseError(f"--keep-runs must be at least 1, got {keep}; prune keeps the newest N score runs")


def is_version_name(text: str) -> bool:
    """Whether `text` can name a version folder of a ranker: one folder name, not a path, '.' or '..'
    (a LATEST file's text, or a --version: `../lstm-attn/V` read another model's record)."""
    return bool(text.strip()) and Path(text).name == text and text not in (".", "..", "LATEST") and "\n" not in text


def check_version(version: str | None) -> None:
    """Refuse a --version that is not a version's name."""
    if version is not None and not is_version_name(version):
        raise ReelsenseError(f"--version {version!r} is not a version name; `reelsense models` lists each model's versions")


def check_saved_version(models_dir: Path, model: str, version: str | None) -> None:
    """Refuse a --version that `model` has no folder for, naming the models that have one of that
    name (probe: `--model sasrec --version V`, V an lstm-attn version, said only "no model sasrec
    version V"; and said it after 5 s of imports)."""
    check_version(version)
    rankers = models_dir / "rankers"
    if version is None or (rankers / model / version).exists():  # its own version, damaged or not: loading says which
        return
    # a saved version has its meta.json (review: an empty folder was named, and `--model` it then failed)
    owners = sorted(p.name for p in rankers.iterdir() if p.name in ALL_MODELS and (p / version / "meta.json").is_file()) if rankers.is_dir() else []
    which = f"--model {owners[0]}" if len(owners) == 1 else f"--model with one of {', '.join(owners)}"
    raise ReelsenseError(
        f"no model {model} version {version} in {rankers}; "
        + (f"{version} is a version of {' and '.join(owners)}: pass {which}" if owners else "`reelsense models` lists them")
    )


def check_run(wh: Warehouse, run_id: str | None, *, without: str = "the latest run") -> dict[str, Any]:
    """The score-batch run to report (the latest when `run_id` is None): its id, scored_at, model
    version and rows. An unknown run is an error, raised before anything is written; `without`
    says what the command does when --run-id is left out."""
    runs = db.analysis(wh, "runs").to_pylist()
    if not runs:
        raise ReelsenseError(f"no scores in {wh.home}; run `reelsense score` first")
    if run_id is None:
        return runs[0]
    found = [r for r in runs if r["run_id"] == run_id]
    if not found:
        known = ", ".join(r["run_id"] for r in runs[:5]) + (f" and {len(runs) - 5} more" if len(runs) > 5 else "")
        near = near_runs(run_id, [r["run_id"] for r in runs])  # probe: `--run-id R1` beside a run r1
        raise ReelsenseError(
            f"no scores with run id {run_id!r}{f' (did you mean {near}?)' if near else ''}; the runs are (newest first): {known}; "
            f"leave out --run-id for {without}"
        )
    return found[0]


def near_runs(run_id: str, runs: list[str]) -> str:
    """The run ids of `runs` close to `run_id`, case aside, as "'a' or 'b'" ("" where none is)."""
    lower = {r.lower(): r for r in runs}
    return " or ".join(repr(lower[m]) for m in difflib.get_close_matches(run_id.lower(), list(lower), n=3))


def check_pair(wh: Warehouse, user: str, item: str) -> dict[str, Any]:
    """What `explain` knows of the pair (known_pair.sql: the user's events, the item, the user's
    events with the item); an unknown user or item is an error that names it, with a query that
    lists some that exist."""
    known = db.analysis(wh, "known_pair", {"user": user, "item": item}).to_pylist()[0]
    if not known["events"] or not known["item"]:
        unknown = []  # (what, id, why, a query that lists some that exist)
        if not known["events"]:
            unknown.append(("user", user, "(no events)", "SELECT DISTINCT user_id FROM events ORDER BY user_id LIMIT 5"))
        if not known["item"]:
            some = "SELECT item_id, title FROM items" if wh.has_rows_on_disk(ITEMS) else "SELECT DISTINCT item_id FROM events"  # probe 50: items empty
            unknown.append(("item", item, "(not in items or events)", f"{some} ORDER BY item_id LIMIT 5"))
        what = " and ".join(f"unknown {kind} {value!r} {why}" for kind, value, why, _ in unknown)
        hints = "; ".join(f'`reelsense sql "{sql}"` lists some {kind}s' for kind, _, _, sql in unknown)
        raise ReelsenseError(f"cannot explain: {what}; {hints}")
    if stale_samples(wh) is None and idle_users(wh, [user]):  # else explain asks after rebuilding `samples`
        raise idle_user_error(user)
    return known


def idle_user_error(user: str) -> ReelsenseError:
    """`explain` of a user with events but no positive interaction (probe: refused after 5.5 s of imports)."""
    return ReelsenseError(
        f"cannot explain: user {user!r} has events but no positive interaction yet ({POSITIVE}), so no history to explain "
        "a ranking from; score runs leave such users out too"
    )


def check_pair_runs(wh: Warehouse, user: str, item: str, run_id: str | None) -> list[dict[str, Any]]:
    """The score runs that scored the pair, newest first (pair_runs.sql); with `run_id`, an error
    where that run is unknown (named with the runs there are) or did not score the pair (probe: "report
    writes them" can never hold for such a pair; and said after 6 s of imports)."""
    if run_id is not None:
        check_run(wh, run_id, without="the latest run that scored the pair")
    runs = db.analysis(wh, "pair_runs", {"user": user, "item": item}).to_pylist()
    if run_id is not None and run_id not in {r["run_id"] for r in runs}:
        scored = ", ".join(repr(r["run_id"]) for r in runs)
        raise ReelsenseError(
            f"run {run_id!r} did not score item {item!r} for user {user!r}, so it has no explanation of the pair; "
            + (
                f"the runs that scored it: {scored}"
                if runs
                else "no run scored it: leave out --run-id to compute one now"
                if has_content_vectors(wh)  # probe 50: it said so where nothing can be computed
                else f"no run scored it, and none can be computed now: {explanations_need_content(wh, run=False)}"
            )
        )
    return runs


def check_users(wh: Warehouse, users: list[str]) -> tuple[list[str], str]:
    """The users of --users that have events, and a warning naming those that have none ("" where
    all do); an error where none has, or where `samples` is current and none has a positive
    interaction. Asked before the score flow's import (probe: 5.5 s)."""
    known = {r["user_id"] for r in db.analysis(wh, "known_users", {"users": users}).to_pylist()}
    unknown = [u for u in users if u not in known]
    cut = _unpassable_users(wh, unknown) if unknown else ""
    if not known:
        listed = cut or '; `reelsense sql "SELECT DISTINCT user_id FROM events"` lists them'
        raise ReelsenseError(f"none of the users given to --users has events: {', '.join(unknown)}{listed}")
    kept = [u for u in users if u in known]
    unknown_part = f"unknown users (no events): {', '.join(unknown)}{cut}" if unknown else ""
    if stale_samples(wh) is None:  # `samples` says who has a positive only where it is current; else the flow asks after its rebuild
        check_positive_users(kept, idle_users(wh, kept), also=unknown_part)  # probe: the unknown ones went unsaid
    return kept, f"{unknown_part}; scoring the other {len(known)}" if unknown else ""


def idle_users(wh: Warehouse, users: list[str] | None) -> list[str]:
    """The users of `users` (every user where None) with events but no positive interaction, so no
    row in `samples` to score them from (users_without_positives.sql); read `samples` current."""
    return [r["user_id"] for r in db.analysis(wh, "users_without_positives", {"every": users is None, "users": users or []}).to_pylist()]


def check_positive_users(users: list[str] | None, idle: list[str], *, also: str = "") -> None:
    """Refuse a --users of only users without a positive interaction (`idle_users`), adding `also`
    (what else is wrong with them). The CLI asks where `samples` is current, the flow after rebuilding
    it (probe: said after the flow's 13 s start)."""
    if users is not None and set(users) <= set(idle):
        named = ", ".join(idle[:5]) + (", ..." if len(idle) > 5 else "")
        raise ReelsenseError(
            f"none of the users given to --users has a positive interaction yet ({POSITIVE}), so nothing to score them from: {named}"
            + (f"; {also}" if also else "")
        )


def _unpassable_users(wh: Warehouse, unknown: list[str]) -> str:
    """Where ids given to --users that have no events were cut from stored ids (a comma in the id,
    or spaces at an end), the sentence that names each with the stored id it came from, else ""
    (probe: " u9 " was called a user with no events)."""
    cut_from: dict[str, list[str]] = {}
    for stored in db.analysis(wh, "unpassable_users").column("user_id").to_pylist():
        for part in comma_names(stored):  # as --users reads it
            if part in unknown:
                cut_from.setdefault(part, []).append(stored)
    if not cut_from:
        return ""
    shown = "; ".join(f"{given} from {', '.join(repr(s) for s in stored[:3])}" for given, stored in list(cut_from.items())[:5])
    return (
        f"; --users splits at commas and trims each id, so it cannot pass a stored id that holds a comma or spaces at its "
        f"ends, and cut these from such ids of `events` ({shown}): leave --users out to score every user"
    )


def run_held(wh: Warehouse, run_id: str) -> list[dict[str, Any]]:
    """What `scores` holds of `run_id`: one row per model version, with its rows and largest rank."""
    return db.analysis(wh, "run_models", {"run_id": run_id}).to_pylist() if wh.has_rows_on_disk(SCORES) else []


def ranking_inputs(wh: Warehouse) -> str:
    """The digest of the data a score run ranks from now (analysis/ranking_inputs.sql: `samples`,
    the engaged pairs, the items and their content vectors' keys); read it with `samples` current.
    A run keeps it beside its rows (flows/score.py claim_run)."""
    return db.analysis(wh, "ranking_inputs").column("digest")[0].as_py()


def content_steps(wh: Warehouse) -> str:
    """The commands that give the warehouse its items' content vectors (a text vector, or a fused one
    that align makes from two modalities), from where it stands: ingest items where it has none, then
    extract (and align for several modalities); where extract gave the items raw vectors of one
    modality other than text, new content (reviews: "extract, align" then did nothing); and the
    items extract skips for undecodable media, if any. One wording for the advice of `score`,
    `report` and `explain` (probe 48: each said to train lstm-attn, which then refused)."""
    raw = sorted({r["modality"] for r in db.analysis(wh, "raw_models").to_pylist()}) if wh.has_rows_on_disk(EMBEDDINGS) else []
    if len(raw) == 1 and raw != ["text"]:
        steps = (
            f"the items have {raw[0]} vectors only, and `reelsense align` needs two modalities on at least 2 items: ingest the items "
            "again with titles (or media with audio), then `reelsense extract` and `reelsense align`"
        )
    elif len(raw) > 1 and "text" not in raw:
        steps = f"`reelsense align` (it fuses the items' {' and '.join(raw)} vectors)"
    else:
        ingest = "" if wh.has_rows_on_disk(ITEMS) else "`reelsense ingest items FILE` (item_id,title,video_uri), "
        steps = f"{ingest}`reelsense extract` (and `reelsense align` for several modalities)"
    skipped = db.analysis(wh, "failed_extractions", {"stage": "extract-items"}).num_rows if wh.has_rows_on_disk(ITEMS) else 0
    if skipped:
        steps += (
            f"; extract skips the {count(skipped, 'item')} whose media it could not decode until they are fixed and ingested again "
            f"(`{db.QUARANTINED_ITEMS}` lists them)"
        )
    return steps


def has_content_vectors(wh: Warehouse) -> bool:
    """Whether any item has a vector the content rankers read (a fused or text one: content_models.sql,
    as `load_dataset` picks them); raw frames or audio vectors before `align` are not (review)."""
    return wh.has_rows_on_disk(EMBEDDINGS) and db.analysis(wh, "content_models").num_rows > 0


EXPLAINED_BY = "explanations come from lstm-attn (its attention and modality contributions)"


def explanations_need_content(wh: Warehouse, cause: str = "", *, run: bool = True) -> str:
    """Why a warehouse without content vectors explains nothing: explanations come from lstm-attn,
    which reads them. Said by `report` before its flow starts (probe 48: after ~15 s of it), by the
    explainer's load (flows/explainers.py) and for a pair no run scored (`run` False); `cause`: the
    load's own error."""
    return (
        f"{EXPLAINED_BY}{', whichever ranker scored the run' if run else ''}, and lstm-attn needs the items' content vectors, which the "
        f"warehouse lacks: {content_steps(wh)}, then `reelsense train --models lstm-attn`{cause}"
    )


def quarantine_reason(wh: Warehouse, item: str) -> str:
    """Why extract holds `item` back (item_quarantine.sql), worded by stage, or "" (review: an
    encoder's refusal is tried again on each run, unlike undecodable media)."""
    reasons = []
    for row in db.analysis(wh, "item_quarantine", {"item": item}).to_pylist():
        if row["stage"] == "extract-items":
            reasons.append(
                f"extract could not decode its media ({row['error']}) and skips it until they are fixed and its row is ingested "
                "again (`reelsense ingest items FILE`; `reelsense extract --force` tries it again as it is)"
            )
        else:  # extract-items:<modality>:encoder
            modality = row["stage"].split(":")[1]
            reasons.append(f"the {modality} encoder refused its input ({row['error']}); `reelsense extract` tries it again on each run")
    return "; ".join(reasons)


def run_k(made: dict[str, Any] | None, largest_rank: int) -> int:
    """A run's --k: the one kept beside its rows (`made`: its record), or where a run of before
    2026-12-07 keeps none, its largest rank (less than its --k where users had fewer items to rank)."""
    return (made or {}).get("k") or largest_rank


def changed_inputs(recorded: str, current: str, *, samples_current: bool = True) -> str:
    """What differs between two `ranking_inputs` digests: "histories" where `samples` or the engaged
    pairs do (ranking_inputs.sql's first two parts), else "items" where the item vocabulary or the
    content vectors' keys do, else "". With `samples_current` False (`samples` not rebuilt since
    `events` changed) its part is not compared: "" then means no change seen outside it."""
    was, now = recorded.split("-"), current.split("-")  # each part a sum of unsigned hashes: no "-" inside
    first = 0 if samples_current else 1
    if len(was) != len(now) or was[first:2] != now[first:2]:
        return "histories"
    return "items" if was[2:] != now[2:] else ""


def unrecorded_warning(wh: Warehouse, run_id: str) -> str:
    """What to warn of completing `run_id`, a run that holds rows, where it keeps no record of the
    data it was ranked from (scored before runs kept one, 2026-12-07): its completion is not
    checked, so after new events a user may get a second list (probe). "" where it keeps one."""
    if store.partition_record(wh, SCORES, run_id) is not None:
        return ""
    return (
        f"run {run_id!r} keeps no record of the data it was ranked from (it was scored before runs kept one), so this "
        "completion is not checked against it: where events, items or content vectors changed since, some users may get "
        f"a second list; `--replace` scores run {run_id!r} again from the current data, and keeps the record"
    )


def replace_warning(wh: Warehouse, run_id: str) -> str:
    """What to warn of `score --replace` where `run_id` holds no scores: nothing is replaced and a
    new run is scored, with the run ids near it named ("" where the run holds scores). A warning,
    not an error: a nightly `--run-id nightly --replace` starts that way (probe: a mistyped run id
    went unsaid; review: said only after a whole scoring pass, it came too late)."""
    if run_held(wh, run_id):
        return ""
    runs = [r["run_id"] for r in db.analysis(wh, "runs").to_pylist()] if wh.has_rows_on_disk(SCORES) else []
    near = near_runs(run_id, runs)
    said = f"--replace: no run {run_id!r} holds scores, so nothing is replaced and a new run {run_id!r} is scored"
    return said + (f" (did you mean {near}?)" if near else "")
