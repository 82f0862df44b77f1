"""The static HTML report of a score-batch run: `<home>/reports/<run>/index.html`,
`users/<user>.html`, `plots/*.png`, and `<home>/reports/index.html` listing every run's report
(newest run first; `<home>/reports/latest` names the newest run's index).

Each run's report is one folder that opens offline (relative links, no scripts, no fonts or styles
from the network), written aside and swapped in whole, so a report of one run never overwrites
another's and a failed report leaves the previous one as it was. Every value from the data is
HTML-escaped. Called by the analyze flow (flows/analyze.py).
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shlex
import shutil
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from flows.console import runnable, say
from flows.report_rankers import other_models_note, results_table
from ranker import plots
from ranker.data import Dataset
from ranker.explain import attention_matrix, label, mean_contributions, profile_words
from ranker.names import REPORT_PAGES
from warehouse import db, store
from warehouse.progress import progress
from warehouse.schemas import SCORES
from warehouse.store import Warehouse

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
.muted{color:#666}.warn{color:#a40;font-weight:bold}.bar{display:inline-block;height:.8em;background:#c05;vertical-align:middle}"""


def page(title: str, body: str, *, up: str = "") -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{up}<h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def run_dir(wh: Warehouse, run_id: str) -> Path:
    """`reports/<run>/`: any run id maps to its own folder name (see `_file`)."""
    return wh.reports_dir / _file(run_id, "")


@contextmanager
def run_folder(wh: Warehouse, run_id: str) -> Iterator[Path]:
    """A fresh folder for a run's report; when the block ends it replaces `reports/<run>/` whole,
    and when the block fails it is removed and the run's previous report stays."""
    final = run_dir(wh, run_id)
    _remove_abandoned(wh.reports_dir)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work = wh.reports_dir / f".{final.name}.tmp-{tag}"
    work.mkdir(parents=True)
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    old = final.rename(wh.reports_dir / f".{final.name}.old-{tag}") if final.exists() else None
    work.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_abandoned(reports: Path) -> None:
    """Remove the folders of reports whose process died while writing them (Ctrl-C, a crash):
    `.<run>.tmp-<pid>-<tag>` and `.<run>.old-<pid>-<tag>` whose pid no longer runs. A folder of a
    live process (another report writing now) is left alone."""
    for folder in reports.glob(".*-*"):
        match = re.fullmatch(r"\..+\.(?:tmp|old)-(\d+)-[0-9a-f]{8}", folder.name)
        if match is None or not folder.is_dir():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (PermissionError, OverflowError):  # alive under another user, or no such pid at all
            continue


def write_runs_index(wh: Warehouse) -> Path:
    """`reports/index.html` listing every run's report (from each `reports/<run>/report.json`),
    newest run first by when `scores` holds it was first scored (the `runs` query, one pass over
    `scores`), and `reports/latest` naming the newest one's index. Returns the index."""
    runs = [
        json.loads(f.read_text()) | {"dir": f.parent.name} for f in wh.reports_dir.glob("*/report.json") if not f.parent.name.startswith(".")
    ]  # not a report being written
    # When each run was first scored, from `scores` (review: a report written before 2026-12-07 keeps
    # its run's last-row time); a report whose run has gone keeps its own.
    first = {r["run_id"]: r["scored_at"].isoformat() for r in db.analysis(wh, "runs").to_pylist()} if wh.has_rows_on_disk(SCORES) else {}
    runs = [r | {"scored_at": first.get(r["run_id"], r.get("scored_at"))} for r in runs]
    runs.sort(key=lambda r: (r.get("scored_at") or "", r.get("written_at") or ""), reverse=True)
    rows = "".join(
        f"<tr><td><a href='{html.escape(r['dir'])}/index.html'>{html.escape(r['run_id'])}</a>{' (latest)' if i == 0 else ''}</td>"
        f"<td>{html.escape(str(r.get('model_version', '')))}</td><td>{html.escape(str(r.get('scored_at', '')))}</td>"
        f"<td>{r['explanations']}</td><td>{r['pages']}</td><td>{html.escape(str(r.get('written_at', '')))}</td></tr>"
        for i, r in enumerate(runs)
    )
    if runs:
        body = f"<table><tr><th>run</th><th>model</th><th>scored at</th><th>explanations</th><th>user pages</th><th>report written at</th></tr>{rows}</table>"
    else:  # probe: after `score --replace` of the only run the index was an empty table, saying nothing
        command = html.escape(f"reelsense --home {shlex.quote(str(wh.home))} report")
        body = (
            f"<p>No report here: <code>{command}</code> writes the latest score run's. A <code>score --replace</code> "
            "or a <code>prune</code> removes the reports of the runs it replaces or removes.</p>"
        )
    index = wh.reports_dir / "index.html"
    store.write_atomic(index, page("reelsense reports", body))
    if runs:
        store.write_atomic(wh.reports_dir / "latest", f"{runs[0]['dir']}/index.html\n")
    else:  # the last report went (prune, score --replace): no pointer to a deleted folder
        (wh.reports_dir / "latest").unlink(missing_ok=True)
    return index


def write_report(
    wh: Warehouse,
    out: Path,
    *,
    data: Dataset,
    explanations: list[dict],
    profiles: dict,
    shifts: dict,
    tags: dict,
    groups_of: Callable[[str], str],
    max_plot_users: int,
    run_id: str,
    max_pages: int = REPORT_PAGES,
    warning: str = "",
    note: str = "",
) -> int:
    """Write the report of a run into `out`; return the number of user pages: the run's users (all
    users where the run has no explanations), the `max_pages` most active of them. `warning` and
    `note`, where given, head its index page."""
    (out / "users").mkdir(parents=True, exist_ok=True)
    by_user: dict[str, list[dict]] = {}
    for row in explanations:
        by_user.setdefault(row["user_id"], []).append(row)
    # The item map follows the user with the most interest shifts among those with a page (probes,
    # 2026-12-03: it could follow a user the run did not score, or one without a page).
    activity = Counter(data.queries.users.tolist())  # positive interactions per user
    paged = sorted(sorted(by_user or shifts, key=lambda u: (-activity[u], u))[:max_pages])
    with_page = set(paged)
    users = sorted((u for u in shifts if u in with_page), key=lambda u: (-len(shifts[u]["shifts"]), u))
    featured = users[0] if users else None
    plotted = set(paged[:max_plot_users])
    drawn = [i for u in sorted((plotted | {featured}) - {None}) for i in shifts.get(u, {}).get("item_ids", [])]
    item_map = plots.item_map(list(data.item_ids), data.content, drawn, groups_of)

    def trajectory(user: str) -> np.ndarray:
        return item_map.path(shifts.get(user, {}).get("item_ids", []))

    coords, groups = item_map.coords, item_map.groups
    with missing_glyphs() as missing:
        figures = _index_plots(out, data, by_user, coords, groups, trajectory, featured, tags)
        for user in progress(paged, desc="report pages", unit="user", leave=False):
            _user_page(
                out,
                user,
                data=data,
                rows=by_user.get(user, []),
                profile=profiles.get(user, {}),
                shift=shifts.get(user),
                tags=tags,
                plot=(coords, groups, trajectory(user)) if user in plotted and len(coords) else None,
            )
    if missing:
        shown = " ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        say(f"{len(missing)} characters of the labels are not in the plots' font ({shown}): the plots draw them as boxes, the pages show them", logging.WARNING)
    (out / "index.html").write_text(_index(wh, out, figures, paged, profiles, shifts, run_id, total=len(by_user or shifts), data=data, header=(warning, note)))
    return len(paged)


@contextmanager
def missing_glyphs() -> Iterator[list[str]]:
    """Gathers matplotlib's "Glyph N missing from font(s)" warnings of the plots drawn inside it
    into the list it yields, a character each, once (probe: one item tagged #旅行 printed 164 of
    them); other warnings are shown when it ends, also where it ends with an error."""
    found: list[str] = []
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield found
    finally:
        for w in caught:
            glyph = re.match(r"Glyph (\d+) .*missing from font", str(w.message))
            if glyph is None:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            elif chr(int(glyph.group(1))) not in found:
                found.append(chr(int(glyph.group(1))))


def _index_plots(out, data, by_user, coords, groups, trajectory, featured, tags) -> list[tuple[str, str]]:
    figures = []
    if len(coords):
        plots.embedding_map(
            coords,
            groups,
            out / "plots" / "embedding_map.png",
            trajectory=trajectory(featured) if featured else None,
            who=featured or "",
            title=f"items by content (t-SNE of {data.content_source}), with {featured}'s path",
        )
        figures.append(
            (
                "plots/embedding_map.png",
                f"Item map: t-SNE of the content vectors ({len(coords):,} items: all of them, or a seeded "
                f"{plots.MAP_ITEMS:,} and the drawn users' items), coloured by topic (sample) or top tag (the {plots.MAP_GROUPS} most common; the rest grey), "
                f"with the interactions of {featured} in time order.",
            )
        )
    attention_user = featured if featured in by_user else next(iter(sorted(by_user)), None)
    if attention_user:
        rows = by_user[attention_user][:8]
        plots.attention_heatmap(out / "plots" / "attention.png", *attention_matrix(rows, tags), user=attention_user)
        figures.append(("plots/attention.png", f"Attention of lstm-attn over {attention_user}'s history for their top-scored items."))
    if by_user:
        shown = sorted(by_user)[:30]
        names = by_user[shown[0]][0]["modality_names"]
        plots.modality_bars(shown, names, mean_contributions(by_user, shown), out / "plots" / "modality_contributions.png")
        figures.append(
            (
                "plots/modality_contributions.png",
                "Modality contributions per user: the score lstm-attn loses when "
                "one modality is removed from every item's fused vector, averaged over the user's scored items.",
            )
        )
    return figures


def _index(wh: Warehouse, out: Path, figures, users, profiles, shifts, run_id: str, total: int, data: Dataset, header: tuple[str, str] = ("", "")) -> str:
    parts = [runnable(f"<p class={style}>{html.escape(text)}</p>", markup=True) for style, text in zip(("warn", "muted"), header) if text]
    results = wh.reports_dir / "results.json"
    if results.exists():
        loaded = json.loads(results.read_text())
        current = all("unmasked" in r for r in loaded.get("models", {}).values())
        parts.append(
            "<h2>Rankers</h2>"
            + (
                runnable(other_models_note(wh, loaded, run_id, data), markup=True) + results_table(loaded, wh.home)
                if current
                else runnable("<p>results.json was written by an older reelsense; rerun <code>reelsense evaluate</code>.</p>", markup=True)
            )
        )
    shifts_json = out / "shifts.json"
    if shifts_json.exists():
        m = json.loads(shifts_json.read_text())
        parts.append(
            f"<h2>Interest shifts against the planted ones</h2><p>precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
            f"F1 <b>{m['f1']:.3f}</b> ({m['matched']} of {m['planted']} planted shifts found, {m['detected']} detected; "
            f"tolerance ±{m['tolerance']} {html.escape(str(m.get('tolerance_unit', '')))}).</p>"
        )
    parts.append(
        "<h2>Plots</h2>"
        + "".join(f"<figure><img src='{src}' alt='{html.escape(cap)}'><figcaption>{html.escape(cap)}</figcaption></figure>" for src, cap in figures)
    )
    rows = "".join(
        f"<tr><td><a href='users/{_file(u)}'>{html.escape(u)}</a></td><td>{len(shifts.get(u, {}).get('shifts', []))}</td>"
        f"<td>{html.escape(profile_words(profiles.get(u, {})))}</td></tr>"
        for u in users
    )
    more = f"; pages for the {len(users)} most active of its {total} users" if total > len(users) else ""
    parts.append(
        f"<h2>Users ({len(users)})</h2><p class=muted>scores from run {html.escape(run_id)}{more}</p>"
        f"<table><tr><th>user</th><th>shifts</th><th>interests</th></tr>{rows}</table>"
    )
    return page("reelsense report", "".join(parts), up=f"<p><a href='../index.html'>all reports</a> · run {html.escape(run_id)}</p>")


def _user_page(out, user: str, *, data: Dataset, rows: list[dict], profile: dict, shift: dict | None, tags: dict, plot) -> None:
    parts = [f"<p><b>Interests:</b> {html.escape(profile_words(profile))}</p>"]
    if profile:
        parts.append(
            "<table><tr><th>kind</th><th>tags (share of weighted engagement)</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(kind)}</td><td>{html.escape(', '.join(f'{t} {s:.0%}' for t, s in values))}</td></tr>"
                for kind, values in sorted(profile.items())
            )
            + "</table>"
        )
    if shift is not None:
        found = shift["shifts"]
        text = (
            "; ".join(
                f"after interaction {s['index']} (drift {s['drift']:.2f}, p={s['p_value']:.3f}): rose "
                f"{', '.join(s['rose']) or '-'}, fell {', '.join(s['fell']) or '-'}"
                for s in found
            )
            or "none detected"
        )
        planted = f" Planted (sample truth): {shift['planted']}." if shift.get("planted") else ""
        parts.append(f"<h2>Interest shifts</h2><p>{shift['interactions']} positive interactions. {html.escape(text)}.{html.escape(planted)}</p>")
    if plot is not None and rows:
        coords, groups, path = plot
        matrix, history_labels, item_labels = attention_matrix(rows[:8], tags)
        drift = np.asarray(shift["drift"] if shift else [], dtype=np.float64)
        plots.user_figure(
            out / "plots" / f"user_{_file(user, '.png')}",
            user=user,
            coords=coords,
            groups=groups,
            trajectory=path,
            attention=matrix,
            history_labels=history_labels,
            item_labels=item_labels,
            drift=drift,
            detected=[s["index"] for s in (shift or {}).get("shifts", [])],
            planted=(shift or {}).get("planted", []),
        )
        parts.append(f"<img src='../plots/user_{_file(user, '.png')}' alt='path, attention and drift of {html.escape(user)}'>")
    if rows:
        body = "".join(
            f"<tr><td>{i + 1}</td><td>{html.escape(r['item_id'])}</td><td>{html.escape(label(tags.get(r['item_id'], {})))}</td>"
            f"<td style='text-align:left'>{html.escape(r['summary'])}</td><td>" + html.escape(_contributions(r)) + "</td></tr>"
            for i, r in enumerate(rows)
        )
        parts.append(
            "<h2>Top-scored items and why</h2><table><tr><th>rank</th><th>item</th><th>label</th><th>why</th>"
            f"<th>modality contributions (score lost when left out)</th></tr>{body}</table>"
        )
    (out / "users" / _file(user)).write_text(page(f"user {user}", "".join(parts), up="<p><a href='../index.html'>back to the report</a></p>"))


def _contributions(row: dict) -> str:
    """A pair's modality contributions in a cell; none where the item has no content vector (probe,
    2026-12-03: "audio +nan, frames +nan, text +nan" for an item popularity served)."""
    values = [(m, c) for m, c in zip(row["modality_names"], row["modality_contributions"]) if c is not None and np.isfinite(c)]
    return ", ".join(f"{m} {c:+.2f}" for m, c in values) if values else "none (no content vector)"


def _file(user: str, suffix: str = ".html") -> str:
    """A file name for any user id (quotes, slashes, non-ASCII): safe characters kept, the rest hex-escaped."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else f"~{ord(c):x}" for c in user) + suffix
