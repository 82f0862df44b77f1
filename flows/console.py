"""What reaches the terminal: the tables and summary lines the CLI and the demo print (drawn here
once), and user errors as one line, never as Prefect tracebacks.

A `ReelsenseError` raised inside a flow or task (a missing checkpoint, a refused run id) is a user
error: the CLI prints it as `reelsense: error: ...` and exits 2. Prefect's own console handler would
first print the traceback of the failing task and flow and two "Finished in state Failed" lines;
`hide_user_error_tracebacks()` filters those records out of the console only. Prefect's API handler
(the run logs you see in the Prefect UI or `prefect flow-run logs`) still gets every record,
tracebacks included.
"""

from __future__ import annotations

import csv
import decimal
import functools
import html
import io
import json
import logging
import math
import re
import shlex
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ranker.names import NEEDS_BASE, REFERENCE
from warehouse.db import QUARANTINED_ITEMS
from warehouse.errors import ReelsenseError


def _user_error_names() -> set[str]:
    names, todo = set(), [ReelsenseError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


class HideUserErrors(logging.Filter):
    """Drops console records about a failure whose cause is a ReelsenseError."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ReelsenseError):
            return False
        if record.name.startswith(("prefect.flow_runs", "prefect.task_runs")) and record.levelno >= logging.INFO:
            message = record.getMessage()
            if "encountered an exception" in message and any(f"{name}:" in message for name in _user_error_names()):
                return False
        return True


def prefect_console_handlers() -> list[logging.Handler]:
    """Prefect's console handlers (configured when Prefect is imported), each once."""
    import prefect.main  # noqa: F401  (runs Prefect's logging setup, which creates the console handlers)
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = (logging.getLogger(), *(logging.getLogger(n) for n in ("prefect", "prefect.flow_runs", "prefect.task_runs", "uvicorn", "fastapi")))
    return list(dict.fromkeys(h for logger in loggers for h in logger.handlers if isinstance(h, PrefectConsoleHandler)))


def hide_user_error_tracebacks() -> None:
    """Install HideUserErrors on Prefect's console handlers."""
    for handler in prefect_console_handlers():
        if not any(isinstance(f, HideUserErrors) for f in handler.filters):
            handler.addFilter(HideUserErrors())


# Tables and summary lines of the terminal (the CLI and the demo print these) -------------------


def comma_names(text: str) -> list[str]:
    """The names of a comma-separated value as --users and --models read it: split at commas, each
    trimmed, empty ones and repeats dropped (`report` and `score` also ask it which stored ids
    --users can pass)."""
    return list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


def run_option(run_id: str) -> str:
    """`--run-id R` as a suggested command passes it: `--run-id=R` where R starts with "-", which
    argparse would read as an option (probe: the advice printed `--run-id -x`, refused)."""
    return f"--run-id={run_id}" if run_id.startswith("-") else f"--run-id {run_id}"


def users_option(users: list[str], *, listed: int = 20) -> str:
    """`--users=...` naming `users` as a suggested command passes them, or "" where there are more
    than `listed` or one cannot pass (a comma, or spaces at its ends: --users splits and trims)."""
    if not users or len(users) > listed or any(comma_names(u) != [u] for u in users):
        return ""
    return " --users=" + shlex.quote(",".join(users))  # `=`: an id may start with "-" (review)


def option_names(option: str, text: str, example: str) -> list[str]:
    """comma_names of an option's value ([] where it names none); an empty name among others is an
    error (probe: `--models sasrec,,` was read as sasrec, `--users` dropped one unsaid)."""
    names = comma_names(text)
    if names and any(not n.strip() for n in text.split(",")):
        raise ReelsenseError(f"{option} {text!r} has an empty name (two commas in a row, or one at an end); give names like {example}")
    return names


def split_users(text: str) -> list[str]:
    """The user ids of a --users value (option_names)."""
    return option_names("--users", text, "u1,u2")


def vs_reference(name: str, result: dict, protocol: str) -> str:
    """A model's paired NDCG@10 difference to sasrec under `protocol`, as the tables show it:
    "reference" on sasrec's own row, "not paired" where no sasrec of the same evaluation measured it
    (both read "-" before: probe)."""
    vs = result.get("vs_sasrec", {}).get(protocol)
    if vs:
        return f"{vs['diff']:+.4f} ({vs['ci95'][0]:+.4f}, {vs['ci95'][1]:+.4f})"
    return "reference" if name == REFERENCE else "not paired"


def unpaired_note(results: dict) -> str | None:
    """What "not paired" means and how to get the pairing, where a row says it (probe: results.md
    and the report said "not paired" without either)."""
    unpaired = [name for name, r in results["models"].items() if vs_reference(name, r, "unmasked") == "not paired"]
    if not unpaired:
        return None
    # A sasrec whose row left the table for another reason than its model being gone is trained
    # (probe: the note said to train one that was there).
    dropped = (results.get("dropped_from_earlier") or {}).get(REFERENCE, UNTRAINED_ROW)
    was = dropped != UNTRAINED_ROW and REFERENCE not in results.get("train_before_evaluate", [])  # results.json of before the flag
    trained = REFERENCE in results["models"] or results.get("reference_trained", was)
    train = "" if trained else f", with a {REFERENCE} trained on this data (`reelsense train --models {REFERENCE}`)"
    command = f"reelsense evaluate --models {','.join([*unpaired, REFERENCE])}{same_evaluation(results)}"
    # Probes: beside a kept sasrec row, or after sasrec alone was evaluated again at a new version,
    # the note said no sasrec was evaluated over the same users.
    kept = results.get("kept_from_earlier", [])
    if REFERENCE in kept:
        why = f"{REFERENCE}'s row is kept from an earlier evaluate, which stores no per-user ranks to pair with {', '.join(unpaired)}"
    else:  # each row for its own reason
        reference = results["models"].get(REFERENCE)
        repaired = [n for n in unpaired if reference and n in kept and results["models"][n].get("was_paired_with")]
        others = [n for n in unpaired if n not in repaired]
        reasons = []
        if repaired:
            earlier = sorted({results["models"][n]["was_paired_with"] for n in repaired})
            reasons.append(
                f"the rows of {', '.join(repaired)} are kept from an earlier evaluate, paired there with {REFERENCE} "
                f"{', '.join(earlier)}; this table's {REFERENCE} is {reference.get('version')}, evaluated without them "
                "(a kept row stores no per-user ranks to pair again)"
            )
        if others:
            reasons.append(f"no {REFERENCE} was evaluated over the same users with {', '.join(others)}")
        why = "; ".join(reasons)
    return runnable(f"not paired: {why}; `{command}` pairs them{train}")


# Why an earlier row left the table where evaluate cannot measure it again (flows/rank.py merged_models).
RETIRED_ROW = "a retired ranker name"
UNTRAINED_ROW = "no longer trained"


def same_evaluation(results: dict) -> str:
    """The flags that repeat an evaluation's seed and quick sample (review: a bare command evaluated
    every user at seed 0, and dropped the rest of a seed-3 table)."""
    return (f" --seed {results['seed']}" if results.get("seed") else "") + (f" --max-users {results['max_users']}" if results.get("max_users") else "")


def dropped_note(results: dict) -> str | None:
    """Which rows of the earlier results.json this evaluate left out, why, and how to measure them
    again (only those still trained under a current name)."""
    dropped = results.get("dropped_from_earlier") or {}
    if not dropped:
        return None
    why = "; ".join(f"{', '.join(n for n, r in dropped.items() if r == reason)}: {reason}" for reason in dict.fromkeys(dropped.values()))
    again = [name for name, reason in dropped.items() if reason not in (RETIRED_ROW, UNTRAINED_ROW)]
    stale = [name for name in again if name in results.get("train_before_evaluate", [])]
    fits = [name for name in again if name not in stale]
    how = f"; `reelsense evaluate --models {','.join(fits)}{same_evaluation(results)}` measures them here" if fits else ""
    if stale:  # their models are of other data: evaluate would refuse them (probe)
        models = ",".join(stale)
        evaluate = f"reelsense evaluate --models {models}{same_evaluation(results)}"
        how += f"; {', '.join(stale)} no longer fit the data: `reelsense train --models {models}`, then `{evaluate}`"
    return runnable(f"no longer in the table ({why}){how}")


def older_code_note(results: dict) -> str | None:
    """Which rows measure fits of other ranker code than the evaluation's (an upgrade, a local edit of
    ranker/ or a model copied from another checkout; probe: evaluate measured them and said nothing),
    and the trains that refit them with the seed and settings each was trained with: one per seed
    (review: one --seed for rows of several refitted some at the wrong one). A re-ranker whose base
    is of this code takes no --seed: without one it trains over its base's latest, with its seed."""
    now, rows = results.get("code_version"), results["models"]
    older = [name for name, r in rows.items() if r.get("train_code") not in (None, now)]
    if not older:
        return None
    groups: dict[int, list[str]] = {}
    for name in older:
        base = NEEDS_BASE.get(name)
        owner = base if base in older else None if base else name  # whose seed the train takes (None: no --seed)
        groups.setdefault(0 if owner is None else rows[owner].get("train_seed") or 0, []).append(name)
    settings = {name: rows[name]["train_settings"] for name in older if rows[name].get("train_settings")}
    trains = [
        f"`reelsense train --models {','.join(names)}{f' --seed {seed}' if seed > 0 else ''}{' --config FILE' if set(names) & set(settings) else ''}`"
        for seed, names in sorted(groups.items())
    ]
    file = rankers_toml(settings)
    them = "it" if len(older) == 1 else "them"
    codes = ", ".join(f"{name} (code {rows[name]['train_code']})" for name in older)
    return runnable(
        f"{'a fit' if len(older) == 1 else 'fits'} of other ranker code than this evaluation's ({now}) in the table: {codes}; "
        f"{' and '.join(trains)} {'retrain' if len(trains) > 1 else 'retrains'} {them} with this code{file}, "
        f"then `reelsense evaluate --models {','.join(older)}{same_evaluation(results)}` measures {them}"
    )


def cold_text(cold: dict) -> str:
    """A cold-item HR@10 with its user count: an HR@10 of 1.0000 over one user read as leakage (probe)."""
    return f"{cold['hr@10']:.4f} ({cold['users']})" if cold.get("users") else "-"


def toml_value(value: object) -> str:
    """A setting as a rankers TOML file writes it (true, not True)."""
    return json.dumps(value) if isinstance(value, (bool, str)) or value is None else repr(value)


def rankers_toml(tables: dict[str, dict]) -> str:
    """What the FILE of an advised `--config FILE` holds, one file for every table (review: a
    parenthesis per table read as several files): ` (FILE: a rankers TOML whose [a] table sets k = v,
    ... and whose [b] table sets ...)`; "" where no table sets anything (probe: a stopped fit of the
    defaults read "whose [sasrec-content] table sets )")."""
    tables = {name: chosen for name, chosen in tables.items() if chosen}
    if not tables:
        return ""
    return f" (FILE: a rankers TOML {' and '.join(f'whose [{name}] table sets {toml_pairs(chosen)}' for name, chosen in tables.items())})"


def settings_summary(settings: dict[str, dict[str, Any]]) -> str:
    """A rankers TOML's tables in one line: `[lstm-attn] max_epochs = 1; [sasrec] patience = 3`."""
    return "; ".join(f"[{name}] {toml_pairs(values)}" for name, values in sorted(settings.items()) if values) or "no settings (every table empty)"


def toml_pairs(settings: dict) -> str:
    """Settings as a rankers TOML table writes them, in one line: `k = v, ...` (true, not True)."""
    return ", ".join(f"{k} = {toml_value(v)}" for k, v in sorted(settings.items()))


def other_base_note(results: dict) -> str | None:
    """Where a re-ranker's row re-ranks another version of its base than the base's row in the same
    table (a kept lightgbm beside an lstm-attn retrained and evaluated since; probe: unsaid)."""
    models = results["models"]
    off = {
        name: f"the {name} row re-ranks {base} {models[name]['base_version']}, not this table's {models[base].get('version')}"
        for name, base in NEEDS_BASE.items()
        if name in models and base in models and models[name].get("base_version") not in (None, models[base].get("version"))
    }
    if not off:
        return None
    names = ",".join(off)
    # The base row's training seed and settings: `train --models lightgbm` trains its base with the seed
    # and settings it is given and reuses only a base of both (probe: the advice fitted a third
    # lstm-attn at seed 0); the re-ranker trains with that seed too.
    bases = {NEEDS_BASE[name] for name in off}
    seeds = {models[base].get("train_seed") for base in bases} - {None, 0}
    train_seed = f" --seed {seeds.pop()}" if len(seeds) == 1 else ""
    settings = {base: models[base].get("train_settings") for base in bases if models[base].get("train_settings")}
    config = " --config FILE" if settings else ""
    file = rankers_toml(settings)
    measure = f"reelsense evaluate --models {names}{same_evaluation(results)}"  # that evaluation's seed and sample (review)
    how = f" with the seed and settings of this table's {', '.join(sorted(bases))}" if train_seed or config else ""
    train = f"reelsense train --models {names}{train_seed}{config}"
    return runnable(f"{'; '.join(off.values())}: `{train}` trains one over it{how}{file}, then `{measure}` measures it")


def results_lines(results: dict) -> list[str]:
    """The results table of the terminal: NDCG@10 under both protocols, cold items, NDCG@10 of
    what score-batch would write by default (the model's own top 10 of the items not engaged with),
    and the paired difference to sasrec (history unmasked)."""
    lines = [f"{'model':<22}{'NDCG@10':>9}{'HR@10':>8}{'masked NDCG@10':>16}{'cold items HR@10 (n)':>22}{'served NDCG@10':>16}   vs sasrec NDCG@10 (95% CI)"]
    repeats = None
    for name, r in results["models"].items():
        o, m, cold = r["unmasked"]["overall"], r["masked"]["overall"], r["unmasked"]["natural_cold_items"]
        vs_text = vs_reference(name, r, "unmasked")
        cold_shown = cold_text(cold)
        served = r.get("scoring_path", {})
        repeats = served.get("repeat_targets", repeats)
        served_text = f"{served['ndcg@10']:.4f}" if "ndcg@10" in served else "-"
        name = f"{name} *" if name in results.get("kept_from_earlier", []) else name
        lines.append(f"{name:<22}{o['ndcg@10']:>9.4f}{o['hr@10']:>8.4f}{m['ndcg@10']:>16.4f}{cold_shown:>22}{served_text:>16}   {vs_text}")
    if repeats is not None:
        lines.append(
            f"served: what score-batch writes by default, the model's own top 10 of the items the user has not "
            f"engaged with ({repeats:.1%} of the test targets are repeats, never served)"
        )
    if results.get("kept_from_earlier"):
        lines.append("* not evaluated by this command: kept from an earlier evaluate of the same data, seed and users")
    for note in (dropped_note(results), unpaired_note(results), other_base_note(results), older_code_note(results)):
        if note:
            lines.append(note)
    return lines


def served_markdown(metrics: dict[str, dict], heading: str) -> list[str]:
    """The markdown table of score-batch's path (ranker/evaluate.py `scoring_path`) for each model
    whose metrics hold it: one row per retrieval (`model`, then `similarity`); [] when none does."""
    rows = []
    for name, m in metrics.items():
        for key in ("scoring_path", "scoring_path_similarity"):
            p = m.get(key, {})
            if "ndcg@10" in p:  # results written before both retrievals existed measured similarity only
                rows.append((name, p.get("retrieval", "similarity"), p))
    if not rows:
        return []
    lines = [
        heading,
        "",
        "| model | retrieval | candidates | repeat targets (never served) | recall of the candidates (95% CI) "
        "| NDCG@10 of the top 10 written (95% CI) | HR@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, retrieval, p in rows:
        how = "the model's own top" if retrieval == "model" else "similarity, re-ranked"
        recall, low, high = p["candidate_recall"], *p["candidate_recall_ci95"]
        lines.append(
            f"| {name} | {retrieval} ({how}) | {p['candidates']} | {p['repeat_targets']:.4f} | {recall:.4f} ({low:.4f}-{high:.4f}) | "
            f"{p['ndcg@10']:.4f} ({p['ndcg@10_ci95'][0]:.4f}-{p['ndcg@10_ci95'][1]:.4f}) | {p['hr@10']:.4f} |"
        )
    return [*lines, ""]


# The commands the tool suggests (`reelsense train ...` in errors, notes and summaries) are written
# without a home. Where the command line named a home other than the one a bare `reelsense` finds
# (--home, against REELSENSE_HOME or ./.reelsense), `runnable` adds it, so each runs as printed
# (probe: a suggested `reelsense sql` read the default home, not the user's).
# The commands the tool may suggest (`reelsense NAME ...`): the CLI's subcommands, kept here so that
# a flow run in a worker process names them without building the CLI (a test holds them equal).
COMMANDS = (
    "ingest",
    "extract",
    "align",
    "features",
    "train",
    "evaluate",
    "score",
    "report",
    "explain",
    "serve",
    "models",
    "sql",
    "compact",
    "prune",
    "sample",
    "demo",
)

# A flow run that no command line started (`reelsense serve` runs each in a worker process, or
# Python calls the flow) takes the home from the run's `home` parameter and always names it: whoever
# reads its log or report runs the command from a shell whose default home is unknown (probe). An
# error such a run raises is logged by Prefect as raised: a wrapper under @flow that rewrote it
# broke Prefect's parameter checks (it resolves annotations in the wrapper's module), so it is not.
_home_args = ""
_suggested: re.Pattern[str] | None = None
_from_cli = False


@functools.cache
def _suggestion_pattern(commands: tuple[str, ...]) -> re.Pattern[str]:
    # not followed by a word character or "-": `reelsense score-batch` is a flow's name, no command
    return re.compile(rf"\breelsense (?=(?:{'|'.join(map(re.escape, commands))})(?![\w-]))")


def name_home(home: Path | None, default: Path | None = None, commands: Iterable[str] = COMMANDS) -> None:
    """Set by the CLI for one command: a suggested `reelsense COMMAND` (COMMAND one of `commands`)
    carries `--home HOME` unless HOME is the default; None (at the command's end) forgets it."""
    global _home_args, _suggested, _from_cli
    same = home is None or default is None or home.resolve() == default.resolve()
    _home_args = "" if same else f" --home {shlex.quote(str(home))}"
    _suggested = _suggestion_pattern(tuple(commands)) if commands and not same else None
    _from_cli = home is not None


def _flow_run_home() -> str | None:
    """The `home` parameter of the flow run this code runs in (absolute: the reader's shell may be
    elsewhere), where no command line named a home."""
    if _from_cli:
        return None
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    home = context.flow_run.parameters.get("home") if context is not None and context.flow_run is not None else None
    return str(Path(home).absolute()) if home else None


def runnable(text: str, *, markup: bool = False) -> str:
    """`text` with each suggested command given the home it is about (`markup`: HTML, escaped)."""
    suggested, home_args = _suggested, _home_args
    if suggested is None:
        home = _flow_run_home()
        if home is None:
            return text
        suggested, home_args = _suggestion_pattern(COMMANDS), f" --home {shlex.quote(home)}"
    inserted = f"reelsense{html.escape(home_args) if markup else home_args} "
    return suggested.sub(lambda _: inserted, text)  # a function: a backslash in the home is no escape (review)


def say(message: str, level: int = logging.INFO) -> None:
    """A message of a stage: inside a flow run a line of its log at `level` (a flow's prints are
    INFO lines: probe, `report` hid a warning among them), elsewhere (`reelsense explain`) a line
    on stderr, `reelsense: warning: ...` for a warning."""
    from prefect import get_run_logger  # lazily: the CLI imports this module before any command runs
    from prefect.exceptions import MissingContextError

    message = runnable(message)
    try:
        get_run_logger().log(level, message)
    except MissingContextError:
        print(f"reelsense: warning: {message}" if level >= logging.WARNING else message, file=sys.stderr)


def extract_line(summary: dict[str, Any]) -> str:
    past = summary.get("past_limit", 0)  # probe: `--limit 2` did not say that items were left to embed
    redone = summary.get("past_limit_embedded", 0)  # probe: "a run without --limit embeds them" did nothing after --force
    retried = summary.get("past_limit_quarantined", 0)
    held = summary.get("skipped_quarantined", 0)  # probe: quarantined items were "skipped", as if embedded
    empty = summary.get("skipped_empty", 0)  # probe: and so were items with nothing to embed
    why = f"; {QUARANTINED_ITEMS} lists why (fix the media, ingest the item again)"
    of_them = [f"{held} of them quarantined before: --force tries them again"] if held else []
    of_them += [f"{count(empty, 'item')} with nothing the configured modalities embed, such as no title and no media"] if empty else []
    return (
        f"extract-items: {summary['embedded']} embedded, {summary['skipped']} skipped" + (f" ({'; '.join(of_them)})" if of_them else "") + ", "
        f"{summary['quarantined']} quarantined"
        + (f", {summary['audio_missing']} without audio" if "audio" in summary.get("modalities", ["audio"]) else "")
        + (f", {summary['without_media']} without media (a title vector only)" if summary.get("without_media") else "")
        # Probe: an empty title beside good media got no text vector, unsaid.
        + (f", {summary['without_title']} without a title (no text vector)" if summary.get("without_title") else "")
        + "; "
        f"{summary['vectors']} vectors in {summary['seconds']}s ({summary['items_per_s']} items/s)"
        + (f"; {count(past, 'item')} past --limit still to embed (a run without --limit embeds them)" if past else "")
        + (f"; {count(redone, 'item')} past --limit not embedded again (--force without --limit re-embeds them)" if redone else "")
        + (f"; {count(retried, 'quarantined item')} past --limit not tried again (--force without --limit tries them)" if retried else "")
        # Probe: "1 quarantined" said neither which nor why, and a rerun skips them.
        + (why if summary["quarantined"] or held else "")
    )


def alignment_lines(report: dict[str, Any]) -> list[str]:
    topics = "   topic-NN (random)" if report.get("topic_neighbours") else ""  # only with `--topics`
    if not report["retrieval"]:  # probe: a header with no row under it
        if not report["held_out_items"]:
            from extractors.align import HOLD_OUT_FROM  # here, not at import: the CLI loads this module before any command

            return [f"not measured: no item was held out (fewer than {HOLD_OUT_FROM} items)"]
        return [f"not measured: fewer than 2 of the {report['held_out_items']} held-out items hold the same two modalities"]
    lines = [f"{'pair':<16}{'R@1':>7}{'R@10':>7}{'median':>8}   random R@10{topics}"]
    for pair, r in report["retrieval"].items():
        a, b = r["aligned"], r["random"]
        topic = report.get("topic_neighbours", {}).get(pair)
        tail = f"   {topic['aligned']:.2f} ({topic['random']:.2f})" if topic else ""
        lines.append(f"{pair:<16}{a['recall@1']:>7.2f}{a['recall@10']:>7.2f}{a['median_rank']:>8.1f}   {b['recall@10']:>11.2f}{tail}")
    return lines


def score_line(summary: dict[str, Any]) -> str:
    per_s = summary["written"] / summary["seconds"] if summary["written"] and summary["seconds"] else 0.0
    shown = f"{per_s:.0f}" if per_s >= 10 else f"{per_s:.2f}".rstrip("0").rstrip(".")  # probe: "(0 rows/s)" for 4 rows in 9 s
    rate = f" ({shown} {'row' if shown == '1' else 'rows'}/s)" if shown != "0" else ""  # and "(1 rows/s)"
    gone = summary.get("replaced") or {}
    # probe: "the old run's 1 scores and 0 explanations removed"; a deleted report went unsaid
    what = [count(gone[t], t[:-1]) for t in ("scores", "explanations") if gone.get(t)] + (["report"] if gone.get("report") else [])
    replaced = f"; the old run's {', '.join(what[:-1])}{' and ' if len(what) > 1 else ''}{what[-1]} removed" if what else ""
    idle = summary.get("without_positives") or 0  # probe: users with events but no positive were dropped unsaid
    first = summary.get("without_positives_first") or []
    named = f" ({', '.join(first)}{', ...' if idle > len(first) else ''})"
    unscored = f"; {count(idle, 'user')} with events but no positive interaction yet not scored{named}" if idle else ""
    grown = ""
    if summary.get("report_predates"):  # probe: a larger --k added ranks the run's report never saw
        grown = f"; the run's report predates these rows: `reelsense report {run_option(summary['run_id'])}` brings it and its explanations up to date"
    return (
        f"score-batch {summary['run_id']}: {count(summary['users'], 'user')} x top {summary['k']} with {summary['model']}: "
        f"{count(summary['written'], 'row')} written, {summary['duplicates']} already there{replaced}{unscored}{grown}; "
        f"{summary['seconds']:.1f}s{rate}"
    )


def count(n: int, noun: str) -> str:
    """'1 file', '2 files': a count with its noun in the right number (nouns that take an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def report_line(wh: Any, summary: dict) -> str:
    shifts = summary.get("shifts")
    quality = (
        (f"; planted shifts: precision {shifts['precision']:.2f}, recall {shifts['recall']:.2f}, F1 {shifts['f1']:.2f} (±{shifts['tolerance']} interactions)")
        if shifts
        else ""
    )
    stale = {  # probe: said only in the log and on the page
        "histories": "; ranked from other data than the warehouse holds now (histories changed since: see the warning)",
        "items": "; ranked from other data than the warehouse holds now (items or content vectors changed since: see the warning)",
    }.get(summary.get("data_changed", ""), "")
    made = f"{count(summary['explanations'], 'explanation')}, {count(summary['pages'], 'user page')}"
    return f"analyze {summary['run_id']}: {made}{quality}{stale}; {summary['report']}"


def format_table(table: pa.Table, *, max_rows: int = 50, max_width: int = 48) -> str:
    """A plain-text table, like DuckDB's shell prints, with cells wider than `max_width` terminal
    columns shortened (0: no limit; a wide CJK character takes two). Columns are taken by position,
    so repeated names (a self-join) are all shown."""

    def cell(value: object) -> str:
        text = "NULL" if value is None else (_nested_text(value) if isinstance(value, (list, tuple, dict)) else str(value)).translate(_CONTROLS)
        return text if not max_width or _display_width(text) <= max_width else _cut(text, max_width - 3) + "..."

    def pad(text: str, width: int) -> str:
        return text + " " * (width - _display_width(text))

    header = [name.translate(_CONTROLS) for name in table.column_names]
    rows = list(zip(*_columns(table.slice(0, max_rows), cell))) if header else []
    widths = [max([_display_width(h)] + [_display_width(r[i]) for r in rows]) for i, h in enumerate(header)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(pad(h, w) for h, w in zip(header, widths)) + " |", line]
    out += ["| " + " | ".join(pad(v, w) for v, w in zip(r, widths)) + " |" for r in rows]
    out.append(line)
    noun = "row" if table.num_rows == 1 else "rows"
    shown = f"{len(rows)} of {table.num_rows} {noun}" if table.num_rows > len(rows) else f"{table.num_rows} {noun}"
    return "\n".join(out + [shown])


# A control character in a cell or a name (a tab, a newline, an escape sequence) is shown escaped,
# never sent to the terminal (probe: a raw tab pushed the row's bars out of line).
_CONTROLS = {c: {9: "\\t", 10: "\\n", 13: "\\r"}.get(c, f"\\x{c:02X}") for c in (*range(32), *range(127, 160))}


def _nested_text(value: object) -> str:
    """A list, STRUCT or MAP in a table cell: Python's form of it ([0.1, None], {'a': 'x'}), but a
    DECIMAL in it as its digits (review: [Decimal('1.10')])."""
    if isinstance(value, list):
        return "[" + ", ".join(_nested_text(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_nested_text(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_nested_text(v)}" for k, v in value.items()) + "}"
    return str(value) if isinstance(value, decimal.Decimal) else repr(value)


def _display_width(text: str) -> int:
    """The columns `text` takes in a terminal: a CJK (East Asian wide) character two; a combining
    or enclosing mark and a format character (a Thai vowel sign, a zero-width joiner) none (probe: a
    title in Chinese pushed its row's bars out of line). Emoji joined into one picture count as that
    picture (probe: they were counted by their parts): an emoji joined (U+200D) to an emoji before it,
    and a skin tone after one, none; the emoji selector (U+FE0F) makes a narrow emoji before it two."""
    return len(text) if text.isascii() else sum(_widths(text))  # review: ASCII has no wide or zero-width character


def _widths(text: str) -> Iterator[int]:
    """Each character's columns in `text` (see `_display_width`)."""
    last, emoji, joined = 0, False, False  # the last visible character's columns; whether it is an emoji; joined to it
    for c in text:
        if c == "\ufe0f":  # ❤ + U+FE0F: the picture, two columns; after a joined part, nothing
            width = 1 if emoji and last == 1 else 0
            last += width
        elif c != "\u00ad" and unicodedata.category(c) in ("Mn", "Me", "Cf"):  # a soft hyphen shows
            width = 0
            joined = joined or (c == "\u200d" and emoji)  # a joiner after a CJK character joins nothing
        else:
            picture = _is_emoji(c)
            if picture and emoji and (joined or "\U0001f3fb" <= c <= "\U0001f3ff"):  # part of the picture before
                width = 0
            else:
                width = 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
            last, emoji, joined = width, picture, False
        yield width


def _is_emoji(c: str) -> bool:
    """Whether `c` is drawn as a picture that joins others (the emoji blocks, arrows to dingbats and
    the symbols that take U+FE0F); not a CJK character."""
    point = ord(c)
    return 0x1F000 <= point <= 0x1FAFF or 0x2190 <= point <= 0x2BFF or c in "\u00a9\u00ae\u203c\u2049\u2122\u2139\u3030\u303d"


def _cut(text: str, columns: int) -> str:
    """The longest start of `text` that fits in `columns` terminal columns."""
    used = 0
    for i, width in enumerate(_widths(text)):
        used += width
        if used > columns:
            return text[:i]
    return text


def format_csv(table: pa.Table) -> str:
    """CSV with a header row and whole values: NULL as an empty field, lists and structs as JSON, a
    float as Python writes it (NaN and infinities as nan, inf, -inf, as DuckDB's COPY writes them;
    inside a list or struct they are JSON's null, as JSON has no such numbers)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.column_names)
    writer.writerows(zip(*_columns(table, _csv_field)))
    return buffer.getvalue()


def _csv_field(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):  # probe: a NaN was "null", which no CSV reader takes for a float
        return repr(value)
    return _json_text(value)


def format_json(table: pa.Table) -> str:
    """A JSON array with one object per row (one per line) and whole values; a repeated column
    name gets a suffix (a, a_1), as DuckDB's own Python results do."""
    names: list[str] = []
    for name in table.column_names:
        unique, n = name, 0
        while unique in names:
            n += 1
            unique = f"{name}_{n}"
        names.append(unique)
    rows = [_dumps(dict(zip(names, row))) for row in zip(*_columns(table, _plain))]
    return "[" + ",\n ".join(rows) + "]\n"


def _columns(table: pa.Table, convert) -> list[list]:
    return [[convert(v) for v in _values(table.column(i))] for i in range(table.num_columns)]


def _values(column: pa.ChunkedArray) -> list:
    """The column as Python values, with those whose Python form is no text a user wants made so,
    alone or inside a list, STRUCT or MAP:
    - a FLOAT (float32) arrives as the nearest double (probe: `round(score, 3)` printed
      2.9489998817443848): it becomes the double whose shortest text is the float32's (2.949), as
      DuckDB's shell prints it;
    - an INTERVAL (`MonthDayNano(months=0, days=3, ...)`) and a BLOB (`b'\\x00ab'`) become DuckDB's
      text of them: `3 days`, `\\x00ab` (probe). (Inside a list in the table, a string shows in
      Python's quotes, its backslashes doubled.)"""
    values = column.to_pylist()
    return [_converted(v, column.type) for v in values] if _converts(column.type) else values


def _inner(kind: pa.DataType) -> list[pa.DataType]:
    if pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind):
        return [kind.value_type]
    if pa.types.is_struct(kind):
        return [kind.field(i).type for i in range(kind.num_fields)]
    if pa.types.is_map(kind):
        return [kind.key_type, kind.item_type]
    return []


def _is_blob(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)


def _converts(kind: pa.DataType) -> bool:
    leaf = pa.types.is_float32(kind) or pa.types.is_interval(kind) or _is_blob(kind)
    return leaf or any(_converts(inner) for inner in _inner(kind))


def _converted(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_float32(kind):
        return float(str(np.float32(value)))
    if pa.types.is_interval(kind):
        return _interval_text(value.months, value.days, value.nanoseconds)
    if _is_blob(kind):  # printable ASCII as is, every other byte (a backslash and quotes too) as \xHH
        return "".join(chr(b) if 32 <= b < 127 and b not in b"\\\"'" else f"\\x{b:02X}" for b in value)
    if pa.types.is_map(kind):  # a list of (key, value) pairs
        return [(_converted(k, kind.key_type), _converted(v, kind.item_type)) for k, v in value]
    if pa.types.is_struct(kind):
        return {name: _converted(value[name], kind.field(name).type) for name in value}
    inner = _inner(kind)
    return [_converted(v, inner[0]) for v in value] if inner else value


def _interval_text(months: int, days: int, nanoseconds: int) -> str:
    """An INTERVAL as DuckDB writes it: `1 year 2 months 3 days 04:05:06.5`, `-01:30:00`, `00:00:00`."""

    def unit(n: int, name: str) -> str:
        return f"{n} {name}" if abs(n) == 1 else f"{n} {name}s"

    years, rest = divmod(abs(months), 12)
    sign = -1 if months < 0 else 1
    parts = [unit(n, name) for n, name in ((sign * years, "year"), (sign * rest, "month"), (days, "day")) if n]
    micros = abs(nanoseconds) // 1000 * (-1 if nanoseconds < 0 else 1)  # integers: a float drops digits (review)
    if micros or not parts:
        hours, rest = divmod(abs(micros), 3_600_000_000)
        minutes, rest = divmod(rest, 60_000_000)
        seconds, fraction = divmod(rest, 1_000_000)
        clock = f"{'-' if micros < 0 else ''}{hours:02d}:{minutes:02d}:{seconds:02d}"
        parts.append(clock + (f".{fraction:06d}".rstrip("0") if fraction else ""))
    return " ".join(parts)


def _plain(value: object) -> object:
    """A value json.dumps writes as valid JSON: NaN and infinities become null; a DECIMAL or HUGEINT
    becomes its digits marked for _dumps, which writes them as a JSON number (probe: it was the
    string "0.10")."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, decimal.Decimal):  # its exact digits, put in as a number by _dumps
        return f"{_DECIMAL}{value}{_DECIMAL}"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _json_text(value: object) -> str:
    if isinstance(value, decimal.Decimal):  # its exact digits: 0.10 (a float would drop the scale)
        return str(value)
    plain = _plain(value)
    return plain if isinstance(plain, str) else _dumps(plain)


# A DECIMAL's digits between two of these (private-use characters) in what _plain returns; _dumps
# writes them as a JSON number, so that 12345678901234567890.123456789 keeps every digit (a float
# would round it; review).
_DECIMAL = "\ue000decimal\ue000"
_DECIMAL_STRING = re.compile(f'"{_DECIMAL}([-0-9.E+]+){_DECIMAL}"')


def _dumps(plain: object) -> str:
    return _DECIMAL_STRING.sub(r"\1", json.dumps(plain, ensure_ascii=False, default=str))


def settings_text(chosen: dict[str, Any] | None) -> str:
    """Settings other than the defaults (ranker/registry.py `chosen_settings`) as `models`, results.md
    and the report show them: `k=v, ...`, "defaults", or "-" for a ranker without settings."""
    if chosen is None:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in sorted(chosen.items())) or "defaults"


def results_markdown(results: dict[str, Any]) -> str:
    """results.md: the evaluation's tables in Markdown (both protocols, the score-batch path, CTR)."""
    from ranker.evaluate import PROTOCOLS  # lazily: the CLI imports this module before any command runs

    lines = [f"# Results: {results['dataset']}", "", f"`{results['command']}` (seed {results['seed']}; {results['evaluation']})", ""]
    users = results["protocol"]["users"]
    kept = results.get("kept_from_earlier", [])
    shown_rows = {(f"{name} \\*" if name in kept else name): r for name, r in results["models"].items()}  # in every table (probe)
    if kept:  # marked * in the tables, as in the terminal's (probe)
        lines += [f"\\* Kept from an earlier evaluation of the same data, seed and users: {', '.join(kept)}.", ""]
    for protocol in PROTOCOLS:
        lines += [
            f"## history {protocol} ({count(users['overall'], 'user')}; {count(users['natural_cold_items'], 'natural cold-item target')})",
            "",
            "| model | NDCG@10 (95% CI) | HR@10 | NDCG@20 | HR@20 | cold items HR@10 (n) | vs sasrec NDCG@10 (paired 95% CI) |",
            "|---|---|---|---|---|---|---|",
        ]
        for (name, r), shown in zip(results["models"].items(), shown_rows, strict=True):
            o, cold = r[protocol]["overall"], r[protocol]["natural_cold_items"]
            vs_text = vs_reference(name, r, protocol)
            cold_shown = cold_text(cold)
            lines.append(
                f"| {shown} | {o['ndcg@10']:.4f} ({o['ndcg@10_ci95'][0]:.4f}-{o['ndcg@10_ci95'][1]:.4f}) | {o['hr@10']:.4f} | "
                f"{o['ndcg@20']:.4f} | {o['hr@20']:.4f} | {cold_shown} | {vs_text} |"
            )
        lines.append("")
    for note in (dropped_note(results), unpaired_note(results), other_base_note(results), older_code_note(results)):
        lines += [note[0].upper() + note[1:] + ".", ""] if note else []
    lines += served_markdown(shown_rows, "## the score-batch path (engaged items removed)")
    lines += ["## sampled CTR metrics", "", "| model | AUC | GAUC | logloss |", "|---|---|---|---|"]
    for shown, r in shown_rows.items():
        c = r["ctr_sampled"]
        loss = "-" if c.get("logloss") is None else f"{c['logloss']:.4f}"
        lines.append(f"| {shown} | {c['auc']:.4f} | {c['gauc']:.4f} | {loss} |")
    # Which fits the rows measure (probe: results.json recorded their seed and settings, results.md did not).
    lines += ["", "## the models measured", "", "| model | version | training seed | settings other than the defaults |", "|---|---|---|---|"]
    for (name, r), shown in zip(results["models"].items(), shown_rows, strict=True):
        over = f" (re-ranks {NEEDS_BASE[name]} {r['base_version']})" if r.get("base_version") and name in NEEDS_BASE else ""
        seed = "-" if r.get("train_seed") is None else r["train_seed"]
        lines.append(f"| {shown} | {r.get('version', '-')}{over} | {seed} | {settings_text(r.get('train_settings'))} |")
    protocol = results["protocol"]
    lines += ["", "Protocol: " + "; ".join(f"{k}: {v}" for k, v in protocol.items() if k != "users"), ""]
    return "\n".join(lines)


def waiting_for_reports() -> None:
    """What prune and `score --replace` print while a report of the home holds its runs."""
    print("reelsense: waiting for a running report of this home to finish (it holds the score runs)", file=sys.stderr, flush=True)
