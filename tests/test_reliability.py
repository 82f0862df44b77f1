"""Reliability: the hostile corpus, crash and resume under SIGKILL, concurrent runs, fuzzing.

Every run here is a real `reelsense` subprocess over a real warehouse; crashes are real SIGKILLs,
either at a named point of a write (warehouse/faults.py) or at a moment chosen from outside.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import hostile
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extractors.sample import SampleConfig, generate_sample
from flows.cli import EXIT_INTERRUPTED
from ranker.data import StaleSamples, load_dataset
from warehouse import db
from warehouse.errors import ReelsenseError
from warehouse.store import Warehouse

BIN = Path(sys.executable).parent
EXTRACT_TOML = "n_frames = 4\nbatch_items = 3\n"
# The crash and concurrency runs embed one modality: the write protocol they test is the same for
# every modality, and audio alone loads no image or text encoder (about 10 s less per run).
AUDIO_TOML = 'modalities = ["audio"]\nbatch_items = 3\ncommit_items = 3\n'
AUDIO_ONE_BY_ONE_TOML = 'modalities = ["audio"]\nbatch_items = 1\ncommit_items = 1\n'


# The API of the session's Prefect test server (set by the `prefect_api` fixture): flow runs of the
# subprocesses report there instead of each starting its own ephemeral server (~12 s apiece).
API: dict[str, str] = {}


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REELSENSE_CRASH_AT"}
    return {**env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **API}


@pytest.fixture(scope="module", autouse=True)
def prefect_api(prefect_harness):
    from prefect.settings import PREFECT_API_URL

    API["PREFECT_API_URL"] = PREFECT_API_URL.value()
    yield
    API.clear()


class Run:
    """A finished `reelsense` subprocess: its exit status and its output."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def start(home: Path, *args: str, crash_at: str | None = None, own_server: bool = False) -> tuple[subprocess.Popen, Path]:
    """Start `reelsense` in its own process group, output to files: a run killed with SIGKILL may
    leave children behind (a Dask worker, or an ephemeral Prefect server where no API is set),
    which would hold pipes open. `own_server`: no PREFECT_API_URL, so the command starts its own
    local Prefect server, in its process group."""
    env = clean_env()
    if own_server:
        env.pop("PREFECT_API_URL", None)
    if crash_at:
        env["REELSENSE_CRASH_AT"] = crash_at
    log = home.parent / f"{home.name}-{time.monotonic_ns()}.log"
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "reelsense"), "--home", str(home), *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def finish(proc: subprocess.Popen, log: Path, timeout: float = 900) -> Run:
    try:
        returncode = proc.wait(timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the run left behind in its group
        except ProcessLookupError:
            pass
    text = log.read_text(errors="replace")
    return Run(returncode, text, text)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def reelsense(home: Path, *args: str, crash_at: str | None = None) -> Run:
    return finish(*start(home, *args, crash_at=crash_at))


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """The sample platform, and a home holding its items and events (ingested once by two
    `reelsense ingest` runs) that `fresh_home` copies: a copy is cheaper than two more runs."""
    root = tmp_path_factory.mktemp("reliability")
    generate_sample(root / "sample", SampleConfig(seed=3, items_per_topic=2, users=30, cold_users=2))
    (root / "audio.toml").write_text(AUDIO_TOML)
    (root / "audio-one-by-one.toml").write_text(AUDIO_ONE_BY_ONE_TOML)
    for kind in ("items", "events"):
        assert reelsense(root / "ingested", "ingest", kind, str(root / "sample" / f"{kind}.csv")).returncode == 0
    return root


def fresh_home(sample: Path, name: str) -> Path:
    home = sample / name
    shutil.copytree(sample / "ingested", home)
    return home


def embedding_keys(home: Path) -> list[tuple]:
    return [tuple(r.values()) for r in db.fetch(Warehouse(home), "SELECT item_id, modality, model, content_hash FROM embeddings")]


def visible_files_are_whole(home: Path) -> None:
    """Every Parquet file DuckDB's globs can see opens and has its footer; temp files are hidden."""
    for path in (home / "tables").rglob("*.parquet"):
        assert not path.name.startswith("."), path
        pq.read_metadata(path)


# 1. Hostile inputs ----------------------------------------------------------------------------


def test_hostile_corpus_is_embedded_or_quarantined_and_counts_add_up(tmp_path):
    items, expected = hostile.write_media(tmp_path / "media")
    counts = hostile.write_events(tmp_path / "events.csv")
    home = tmp_path / "home"
    ingested = reelsense(home, "ingest", "items", str(items))
    assert ingested.returncode == 0, ingested.stderr
    rejected = [k for k, v in expected.items() if v == "reject"]
    assert f"{len(expected)} rows in items.csv: {len(expected) - len(rejected)} accepted, {len(rejected)} quarantined, 0 duplicates" in ingested.stdout
    events = reelsense(home, "ingest", "events", str(tmp_path / "events.csv"))
    assert (
        f"{counts['input']} rows in events.csv: {counts['accepted']} accepted, {counts['quarantined']} quarantined, {counts['duplicates']} duplicates"
    ) in events.stdout, events.stdout + events.stderr
    run = reelsense(home, "extract", "--config", str(_toml(tmp_path)))
    assert run.returncode == 0, run.stderr[-3000:]
    wh = Warehouse(home)
    embedded = {r["item_id"]: set(r["m"]) for r in db.fetch(wh, "SELECT item_id, list(modality) AS m FROM embeddings GROUP BY 1")}
    failures = {r["item_id"]: r["error"] for r in db.fetch(wh, "SELECT item_id, error FROM failures WHERE stage = 'extract-items'")}
    for item, expectation in expected.items():
        if expectation == "embed":
            assert {"frames", "text"} <= embedded.get(item, set()), item
        elif expectation == "quarantine":
            assert item not in embedded and "cannot decode video" in failures[item], item
    assert {"audio", "frames", "text"} == embedded["vp9_webm"] == embedded["one_frame"]
    assert "audio" not in embedded["no_audio"]
    assert db.fetch(wh, "SELECT count(*) AS n FROM failures WHERE stage = 'extract-items:audio'")[0]["n"] == 2  # huge, no_audio
    hostile_id = db.fetch(wh, "SELECT item_id FROM embeddings WHERE item_id = $1 LIMIT 1", ["id'with\"quotes;"])
    assert hostile_id == [{"item_id": "id'with\"quotes;"}]
    visible_files_are_whole(home)


def _toml(folder: Path) -> Path:
    path = folder / "extract.toml"
    path.write_text(EXTRACT_TOML)
    return path


# 2. Crash and resume --------------------------------------------------------------------------


@pytest.mark.chaos
def test_extraction_killed_at_each_write_point_resumes_without_loss_or_duplicates(sample):
    """Killed after an append's file landed, then (the rerun) before a file is renamed into place:
    each time the visible files are whole, nothing is duplicated and nothing committed is lost;
    a third run finishes the job."""
    home = fresh_home(sample, "crash-writes")
    partial: list[tuple] = []
    for point in ("append:after-write@2", "write:before-rename@2"):
        killed = reelsense(home, "extract", "--config", str(sample / "audio.toml"), crash_at=point)
        assert killed.returncode == -signal.SIGKILL, point
        visible_files_are_whole(home)
        keys = embedding_keys(home)
        assert len(keys) == len(set(keys)) < 12 and set(partial) <= set(keys), point
        partial = keys
    resumed = reelsense(home, "extract", "--config", str(sample / "audio.toml"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    keys = embedding_keys(home)
    assert len(keys) == len(set(keys)) == 12 and set(partial) <= set(keys)
    assert not list((home / "tables").rglob(".*.tmp"))


# The own-server case starts a Prefect server of its own (~28-32 s): e2e, so CI runs it in `make
# test-e2e` and `make test` stays inside its 12 minutes (CI's run on 2026-12-02 took 11:50).
@pytest.mark.chaos
@pytest.mark.parametrize("how", ["SIGKILL", "Ctrl-C", "SIGTERM", pytest.param("SIGTERM to the group, own server", marks=pytest.mark.e2e)])
def test_extraction_killed_from_outside_mid_run_resumes(sample, how):
    """SIGKILL from outside, Ctrl-C (SIGINT to the whole process group, the local Prefect server
    too, as a terminal sends it) or SIGTERM (to the process alone, as `kill`, systemd and `docker
    stop` send it), as soon as the first batch (one item) is written; the rerun completes. Ctrl-C
    exits at once with 130 and one line (probe: 3 minutes of Prefect retrying its stopped server,
    then exit 1 and pages of tracebacks), SIGTERM with 143, its local Prefect server stopped too
    (before: left running). SIGTERM to the whole group (systemd's default), the command's own
    local server too: Prefect's SIGTERM bridge retried its stopped server for 77 s (review)."""
    for attempt in (1, 2):
        home, left, interrupted = _kill_extraction(sample, how, attempt)
        # A group SIGTERM also reaches the command's own Prefect server; now and then it dies
        # mid-write with a traceback from prefect/server itself (1 run in 3 on 2026-12-02). One
        # retry for that case only: a traceback of reelsense's own, or a second one, still fails.
        if attempt == 1 and how.endswith("own server") and "prefect/server/" in interrupted.stdout.split("Traceback", 1)[-1]:
            continue
        break
    if how != "SIGKILL":
        expected = (130, "reelsense: interrupted;") if how == "Ctrl-C" else (143, "reelsense: stopped by SIGTERM;")
        assert interrupted.returncode == expected[0], interrupted.stdout[-2000:]
        assert f"{expected[1]} finished writes are kept" in interrupted.stdout and "Traceback" not in interrupted.stdout
        assert not left, "a child of the interrupted run outlived it"
    partial = embedding_keys(home)
    assert 0 < len(partial) < 12 and len(partial) == len(set(partial))
    assert reelsense(home, "extract", "--config", str(sample / "audio.toml")).returncode == 0
    keys = embedding_keys(home)
    assert len(keys) == len(set(keys)) == 12 and set(partial) <= set(keys)


STOPPED_LINE = "reelsense: stopped by SIGTERM; finished writes are kept, rerun the same command to complete"
LOST_SIGTERM = """
import os, signal, sys, time
from prefect import flow
from prefect.exceptions import TerminationSignal
from flows import cli

@flow
def lost_on_the_way(args):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    except TerminationSignal:
        if sys.argv[2] == "swallowed":  # as a library that catches BaseException might
            return "done"
        raise ValueError("Task run is not set")  # what Prefect's crash report raised in its place

cli._features = lost_on_the_way
sys.argv = ["reelsense", "--home", sys.argv[1], "features", *sys.argv[3:]]
sys.exit(cli.main())
"""


@pytest.mark.chaos
@pytest.mark.parametrize("lost", ["replaced", "swallowed"])
def test_a_sigterm_that_prefect_loses_on_the_way_still_stops_with_143(tmp_path, lost):
    """With PREFECT_API_URL, Prefect's bridge turns SIGTERM into TerminationSignal inside the flow.
    Landing while a task run was being created, its crash report raised "Task run is not set"
    instead, and the command exited 1 with a traceback (CI, 2026-12-02). The same loss, made
    deterministic: the flow swaps the TerminationSignal for that ValueError, or swallows it and
    returns (review: the command then exited 0)."""
    script = tmp_path / "lost.py"
    script.write_text(LOST_SIGTERM)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "home"), lost], env=clean_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 143, run.stderr[-2000:]
    after = run.stderr.split("Beginning flow run", 1)[1].splitlines()[1:]  # what the console got once the flow began
    assert [line for line in after if line.strip() and "View at http" not in line] == [STOPPED_LINE], after


CTRL_C_AS_IT_EXITS = """
import signal, sys
from prefect import flow
from prefect.server.api import server
from flows import cli

stop_server = server.SubprocessASGIServer.stop  # Python's exit calls it (atexit) to stop the local server

def interrupted_stop(self):
    if self.server_process is not None:
        signal.raise_signal(signal.SIGINT)  # a Ctrl-C as it does
    stop_server(self)

server.SubprocessASGIServer.stop = interrupted_stop

@flow
def quick(args):
    return None

cli._features = quick
sys.argv = ["reelsense", "--home", sys.argv[1], "features"]
sys.exit(cli.main())
"""


@pytest.mark.chaos
@pytest.mark.e2e  # it starts its own Prefect server
def test_ctrl_c_as_the_command_exits_stops_its_server_in_one_line(tmp_path):
    """Probe: a Ctrl-C while Python's exit stopped the command's own Prefect server (an atexit
    callback) printed Prefect's traceback. The command had ended; the server is stopped and one
    line says so."""
    script = tmp_path / "exiting.py"
    script.write_text(CTRL_C_AS_IT_EXITS)
    env = {k: v for k, v in clean_env().items() if k != "PREFECT_API_URL"}  # its own local server, a child
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "home")], env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=300)
        deadline = time.monotonic() + 15
        while group_alive(proc.pid) and time.monotonic() < deadline:  # the Prefect server stopped too
            time.sleep(0.1)
        left = group_alive(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert "Finished in state Completed" in stderr  # the flow had ended
    assert stderr.rstrip().splitlines()[-1] == EXIT_INTERRUPTED.format(name="Ctrl-C")
    assert not left, "the local Prefect server outlived the command"


def _kill_extraction(sample, how: str, attempt: int):
    """Start an extraction, kill it `how` once its first item is written: (home, a child left, the run)."""
    home = fresh_home(sample, f"crash-outside-{how.split(',')[0].replace(' ', '-')}-{attempt}")
    proc, log = start(home, "extract", "--config", str(sample / "audio-one-by-one.toml"), own_server="own server" in how)
    deadline = time.monotonic() + 600
    while not list((home / "tables" / "embeddings").rglob("*.parquet")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"extract ended before it could be killed: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    if how == "SIGKILL":
        os.kill(proc.pid, signal.SIGKILL)
        killed = finish(proc, log)
        assert killed.returncode == -signal.SIGKILL
        return home, False, killed
    if how == "Ctrl-C":
        os.killpg(proc.pid, signal.SIGINT)
    elif how == "SIGTERM":
        os.kill(proc.pid, signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
        deadline = time.monotonic() + 15
        while group_alive(proc.pid) and time.monotonic() < deadline:  # the Prefect server stopped too
            time.sleep(0.1)
        left = group_alive(proc.pid)
    finally:
        interrupted = finish(proc, log, timeout=1)
    return home, left, interrupted


@pytest.mark.chaos
def test_feature_build_killed_mid_replace_is_rolled_forward_on_read(sample):
    home = fresh_home(sample, "crash-features")
    first = reelsense(home, "features")
    assert first.returncode == 0, first.stderr[-2000:]
    rows_sql = "SELECT * FROM samples ORDER BY ALL"
    clean = db.fetch(Warehouse(home), rows_sql)
    # A like of an item the user was never shown, after everything: one more interaction (a like of
    # a shown item would join the interaction of its impression), so one more sample.
    user = clean[0]["user_id"]
    item = db.fetch(
        Warehouse(home), "SELECT min(item_id) AS item_id FROM items WHERE item_id NOT IN (SELECT item_id FROM events WHERE user_id = $user)", {"user": user}
    )[0]["item_id"]
    later = (max(r["event_ts"] for r in clean) + timedelta(days=1)).isoformat()
    (home / "later.csv").write_text(f"user_id,item_id,event_ts,event,watch_ratio\n{user},{item},{later},like,\n")
    assert reelsense(home, "ingest", "events", str(home / "later.csv")).returncode == 0
    killed = reelsense(home, "features", crash_at="swap:after-add")
    assert killed.returncode == -signal.SIGKILL
    assert (home / "tables" / "samples" / ".journal.json").exists()  # old and new files both on disk
    after = db.fetch(Warehouse(home), rows_sql)  # the reader finishes the replace first
    assert not (home / "tables" / "samples" / ".journal.json").exists()
    assert len(after) == len(clean) + 1  # one version (the new events'), not both
    # The build died before recording what it was built from: readers rebuild rather than trust it.
    with pytest.raises(StaleSamples):
        load_dataset(Warehouse(home))
    again = reelsense(home, "features")
    assert again.returncode == 0 and db.fetch(Warehouse(home), rows_sql) == after  # exactly the completed build
    assert load_dataset(Warehouse(home)).n_items > 0
    visible_files_are_whole(home)


@pytest.mark.chaos
@pytest.mark.parametrize("point", ["write:before-rename", "swap:after-add"])
def test_compaction_killed_at_any_point_loses_and_duplicates_nothing(sample, point):
    """Events ingested in two halves (two small files per partition), then `reelsense compact`
    killed before its merged file is renamed into place, or after the merged files landed and
    before the small ones are removed: the next read sees every row exactly once, and a compaction
    run again finishes the job."""
    home = sample / f"crash-compact-{point.split(':')[1]}"
    lines = (sample / "sample" / "events.csv").read_text().splitlines(keepends=True)
    half = len(lines) // 2
    for part, body in (("a", lines[1:half]), ("b", lines[half:])):
        (sample / f"events-{part}.csv").write_text(lines[0] + "".join(body))
        assert reelsense(home, "ingest", "events", str(sample / f"events-{part}.csv")).returncode == 0
    rows_sql = "SELECT * FROM events ORDER BY ALL"
    clean = db.fetch(Warehouse(home), rows_sql)
    files = len(list((home / "tables" / "events").rglob("*.parquet")))
    killed = reelsense(home, "compact", "events", crash_at=point)
    assert killed.returncode == -signal.SIGKILL
    assert db.fetch(Warehouse(home), rows_sql) == clean  # recovered on read: each row once
    visible_files_are_whole(home)
    done = reelsense(home, "compact", "events")
    assert done.returncode == 0, done.stdout[-2000:]
    assert db.fetch(Warehouse(home), rows_sql) == clean
    assert len(list((home / "tables" / "events").rglob("*.parquet"))) < files


def _score_runs(home: Path, runs: list[str], explained: list[str] | None = None) -> None:
    """Score runs written straight to the tables (three users, two items each; explained: all or
    `explained`), the oldest first: what prune reads, without training a model."""
    from datetime import datetime, timezone

    import pyarrow as pa

    from warehouse import store
    from warehouse.schemas import EXPLANATIONS, SCORES

    wh = Warehouse(home)
    for n, run in enumerate(runs):
        pairs = [(f"u{u}", f"i{u + k}") for u in range(3) for k in range(2)]
        at = datetime(2026, 1, 1 + n, tzinfo=timezone.utc)
        store.append(
            wh,
            SCORES,
            pa.Table.from_pylist(
                [{"run_id": run, "user_id": u, "item_id": i, "score": 1.0, "rank": 1, "model_version": "m@1", "scored_at": at} for u, i in pairs],
                schema=SCORES.schema,
            ),
        )
        if explained is None or run in explained:
            why = [{"run_id": run, "user_id": u, "item_id": i, "model_version": "m@1", "summary": "because"} for u, i in pairs]
            store.append(wh, EXPLANATIONS, pa.Table.from_pylist(why, schema=EXPLANATIONS.schema))
    db.refresh_views(wh)


@pytest.mark.chaos
@pytest.mark.parametrize("point", ["swap:after-add", "swap:after-add@2"])
def test_prune_killed_at_any_point_never_keeps_an_explanation_without_its_score(tmp_path, point):
    """`reelsense prune --keep-runs 1` over three runs, killed after journaling the removal of the
    older runs' explanations (the first swap) or of their scores (the second): the next read has
    either finished the removal or not begun it, never explains a score that is gone, and never
    touches the kept run; prune run again finishes the job."""
    home = tmp_path / "home"
    _score_runs(home, ["r1", "r2", "r3"])
    wh = Warehouse(home)
    kept_sql = "SELECT * FROM {} WHERE run_id = 'r3' ORDER BY ALL"
    kept = {t: db.fetch(wh, kept_sql.format(t)) for t in ("scores", "explanations")}
    killed = reelsense(home, "prune", "--keep-runs", "1", crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:]
    orphans = "SELECT count(*) AS n FROM explanations e ANTI JOIN scores s USING (run_id, user_id, item_id)"
    assert db.fetch(wh, orphans) == [{"n": 0}]
    assert db.fetch(wh, "SELECT DISTINCT run_id FROM explanations ORDER BY 1") == [{"run_id": "r3"}]  # rolled forward
    assert {t: db.fetch(wh, kept_sql.format(t)) for t in ("scores", "explanations")} == kept
    visible_files_are_whole(home)
    done = reelsense(home, "prune", "--keep-runs", "1")
    assert done.returncode == 0, done.stdout[-2000:]
    assert db.fetch(wh, "SELECT DISTINCT run_id FROM scores") == [{"run_id": "r3"}]
    assert {t: db.fetch(wh, kept_sql.format(t)) for t in ("scores", "explanations")} == kept


def test_pruning_the_last_explained_run_leaves_an_empty_explanations_table_not_a_broken_view(tmp_path):
    """Runs r1 and r2 explained, r3 (the newest) not: keeping one run removes every explanation, and
    the view of the table answers 0 rather than failing on a glob of no files."""
    from flows.prune import prune_runs

    home = tmp_path / "home"
    _score_runs(home, ["r1", "r2", "r3"], explained=["r1", "r2"])
    prune_runs(Warehouse(home), 1)
    assert db.query(Warehouse(home), "SELECT count(*) AS n FROM explanations").to_pylist() == [{"n": 0}]
    assert db.query(Warehouse(home), "SELECT DISTINCT run_id FROM scores").to_pylist() == [{"run_id": "r3"}]


def test_a_table_emptied_by_a_process_that_died_before_refreshing_the_views_reads_as_empty(tmp_path):
    """The last run's explanations removed and the views not refreshed (the remover was killed in
    between): the next reader sees a view that still globs files, rebuilds it, and answers 0."""
    from warehouse import store
    from warehouse.schemas import EXPLANATIONS

    home = tmp_path / "home"
    _score_runs(home, ["r1"])
    store.drop_partitions(Warehouse(home), EXPLANATIONS, {"r1"})  # no refresh_views: as if killed here
    assert db.query(Warehouse(home), "SELECT count(*) AS n FROM explanations").to_pylist() == [{"n": 0}]


def _prune_one(home: str, started: str) -> None:
    from flows.prune import prune_runs

    Path(started).touch()
    prune_runs(Warehouse(home), 1)


def test_prune_waits_for_a_running_report(tmp_path):
    """A report holds the runs shared while it writes a run's explanations and pages (flows/analyze.py):
    prune waits for it instead of deleting the run under it, then prunes."""
    import multiprocessing

    from warehouse import store

    home = tmp_path / "home"
    _score_runs(home, ["r1", "r2"])
    started = tmp_path / "prune-started"
    with store.runs_lock(Warehouse(home), exclusive=False):
        pruning = multiprocessing.get_context("spawn").Process(target=_prune_one, args=(str(home), str(started)))
        pruning.start()
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
        time.sleep(1.0)  # two tiny runs prune in well under a second when nothing holds them back
        assert pruning.is_alive() and db.fetch(Warehouse(home), "SELECT count(DISTINCT run_id) AS n FROM scores") == [{"n": 2}]
    pruning.join(60)
    assert pruning.exitcode == 0 and db.fetch(Warehouse(home), "SELECT DISTINCT run_id FROM scores") == [{"run_id": "r2"}]


# 3. Concurrency -------------------------------------------------------------------------------


@pytest.mark.chaos  # processes at once, as the crash tests' are: in make test-chaos (make test keeps under 12 minutes)
def test_two_concurrent_extractions_embed_each_item_once(sample):
    home = fresh_home(sample, "concurrent")
    runs = [start(home, "extract", "--config", str(sample / "audio.toml")) for _ in range(2)]
    for proc, log in runs:
        run = finish(proc, log)
        assert run.returncode == 0, run.stdout[-3000:]
    keys = embedding_keys(home)
    assert len(keys) == len(set(keys)) == 12


def _refresh_and_query(home: str, rounds: int) -> None:
    wh = Warehouse(home)
    for _ in range(rounds):
        db.refresh_views(wh)
        assert db.query(wh, "SELECT count(*) AS n FROM events").column("n")[0].as_py() == 1


@pytest.mark.chaos  # processes at once: in make test-chaos
def test_concurrent_view_refreshes_and_queries_wait_instead_of_failing(tmp_path):
    """DuckDB allows one read-write process or many readers; without the database lock, processes
    refreshing views while others query fail with "Could not set lock on file"."""
    import multiprocessing
    from datetime import datetime, timezone

    import pyarrow as pa

    from warehouse import store
    from warehouse.schemas import EVENTS, user_partition

    wh = Warehouse(tmp_path / "home")
    store.append(
        wh,
        EVENTS,
        pa.Table.from_pylist(
            [
                {
                    "user_id": "u",
                    "item_id": "i",
                    "event_ts": datetime(2026, 1, 1, tzinfo=timezone.utc),
                    "event": "like",
                    "watch_ratio": None,
                    "user_bucket": user_partition("u"),
                }
            ],
            schema=EVENTS.schema,
        ),
    )
    db.refresh_views(wh)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_refresh_and_query, args=(str(wh.home), 30)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]


# 4. Fuzzing -----------------------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(text, text, st.one_of(st.just("2026-01-01T00:00:00Z"), text), st.sampled_from(["watch", "like", "bogus", ""]), st.one_of(st.just(""), text)),
        max_size=8,
    )
)
def test_fuzzed_event_rows_are_accepted_or_quarantined_never_lost(tmp_path_factory, rows):
    from warehouse.ingest import ingest_events

    folder = tmp_path_factory.mktemp("fuzz")
    import csv

    with open(folder / "events.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "event_ts", "event", "watch_ratio"])
        writer.writerows(rows)
    wh = Warehouse(folder / "home")
    try:
        report = ingest_events(wh, folder / "events.csv")
    except ReelsenseError:
        return  # a whole-file problem (e.g. a row csv cannot split into the header's columns) is one clear error
    assert report.input_rows == len(rows)
    assert report.accepted + report.quarantined + report.duplicates == report.input_rows
    if report.accepted:
        db.refresh_views(wh)
        stored = db.fetch(wh, "SELECT user_id FROM events")
        assert len(stored) == report.accepted


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=text.filter(bool))
def test_hostile_ids_reach_sql_only_as_parameters(tmp_path_factory, value):
    """`reelsense sql --param`, and the stages' own lookups, take any id as a value, never as SQL."""
    from datetime import datetime, timezone

    import pyarrow as pa

    from warehouse import store
    from warehouse.schemas import EVENTS, user_partition

    wh = Warehouse(tmp_path_factory.mktemp("ids") / "home")
    row = {
        "user_id": value,
        "item_id": value,
        "event_ts": datetime(2026, 1, 1, tzinfo=timezone.utc),
        "event": "like",
        "watch_ratio": None,
        "user_bucket": user_partition(value),
    }
    store.append(wh, EVENTS, pa.Table.from_pylist([row], schema=EVENTS.schema))
    db.refresh_views(wh)
    assert db.query(wh, "SELECT user_id FROM events WHERE user_id = $1", [value]).column("user_id").to_pylist() == [value]
    assert [r["n"] for r in db.fetch(wh, "SELECT count(*) AS n FROM events WHERE list_contains($users, user_id)", {"users": [value, "x"]})] == [1]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=text)
def test_explain_with_any_id_is_a_clear_error(ranked_home, value):
    from flows.analyze import explain_lines

    with pytest.raises(ReelsenseError, match="unknown user"):
        explain_lines(ranked_home, "?" + value, "i000")
