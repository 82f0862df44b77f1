"""score-batch: candidates by embedding similarity, re-ranking, the scores table, idempotent run
ids, Dask shards, and the registry refusing a model that does not fit the data. Through the CLI:
engaged items are never recommended, a run id belongs to one model version, bad arguments and
unknown users are named before any flow starts (issue 17)."""

from __future__ import annotations

import html
import json
import re
import shutil
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import tiny_platform
from conftest import write_csv

from flows.arguments import ranking_inputs
from flows.cli import main
from flows.report import run_dir
from flows.score import run_score, score_batch, shard_buckets
from ranker import artifacts
from ranker.data import MAX_HISTORY, StaleSamples, ensure_samples, load_dataset, warehouse_popularity
from ranker.scoring import current_queries, engaged_pairs, similarity_candidates
from warehouse import db, store
from warehouse.errors import ReelsenseError
from warehouse.schemas import EVENT_PARTITIONS, EXPLANATIONS, SCORES
from warehouse.store import Warehouse


def test_current_queries_end_with_each_users_latest_positive(ranked_home):
    data = load_dataset(ranked_home)
    queries = current_queries(data)
    assert sorted(queries.users) == sorted(set(data.queries.users)) == [f"user{u:02d}" for u in range(tiny_platform.USERS)]
    latest = {
        r["user_id"]: r["item_id"]
        for r in db.fetch(
            ranked_home,
            """
        SELECT user_id, arg_max(item_id, event_ts) AS item_id FROM events GROUP BY user_id""",
        )
    }
    for user, newest in zip(queries.users, queries.hist_items[:, -1]):
        assert data.item_ids[newest] == latest[user]


def test_candidates_are_unseen_items_of_the_users_current_topic(ranked_home):
    data = load_dataset(ranked_home)
    queries = current_queries(data)
    engaged = db.analysis(ranked_home, "engaged_items", {"buckets": list(range(EVENT_PARTITIONS))})
    seen = engaged_pairs(data, queries, engaged.column("user_id").to_pylist(), engaged.column("item_id").to_pylist())
    candidates = similarity_candidates(data, queries, 4, engaged=seen)
    for q in range(len(queries)):
        liked = {data.item_ids.index(r["item_id"]) for r in engaged.to_pylist() if r["user_id"] == queries.users[q]}
        assert set(queries.hist_items[q]) - {0} <= liked
        assert not liked & set(candidates[q]), "a candidate was already engaged with"
        recent = [tiny_platform.topic_of(data.item_ids[i]) for i in queries.hist_items[q, -5:]]
        top_topic = max(set(recent), key=recent.count)
        assert tiny_platform.topic_of(data.item_ids[candidates[q, 0]]) == top_topic


def test_score_batch_writes_top_k_per_user_once_per_run_id(ranked_home):
    first = score_batch(str(ranked_home.home), model="lstm-attn", k=5, n_candidates=12, run_id="run-a")
    assert first["users"] == tiny_platform.USERS and first["written"] == tiny_platform.USERS * 5
    again = score_batch(str(ranked_home.home), model="lstm-attn", k=5, n_candidates=12, run_id="run-a")
    assert again["written"] == 0 and again["duplicates"] == tiny_platform.USERS * 5
    # Probe: a smaller --k on the run said only "0 rows written, 180 already there"; now it is refused, named
    refused = r"run id 'run-a' was scored with --k 5, and this run asks for the top 3: a run holds one --k"
    with pytest.raises(ReelsenseError, match=refused):
        score_batch(str(ranked_home.home), model="lstm-attn", k=3, n_candidates=12, run_id="run-a")
    rows = db.fetch(
        ranked_home,
        "SELECT user_id, count(*) AS n, list(rank ORDER BY score DESC) AS ranks, "
        "any_value(model_version) AS v FROM scores WHERE run_id = 'run-a' GROUP BY user_id",
    )
    assert len(rows) == tiny_platform.USERS
    assert all(r["n"] == 5 and r["ranks"] == [1, 2, 3, 4, 5] and r["v"].startswith("lstm-attn@") for r in rows)
    # Users who shifted are recommended their new topic, users who never shifted their only one.
    hits = db.fetch(ranked_home, "SELECT user_id, item_id FROM scores WHERE run_id = 'run-a' AND rank = 1")
    right = [
        tiny_platform.topic_of(h["item_id"]) == tiny_platform.TOPICS[(int(h["user_id"][4:]) % 3 + (int(h["user_id"][4:]) < tiny_platform.SHIFTERS)) % 3]
        for h in hits
    ]
    assert np.mean(right) >= 0.9


def test_lightgbm_and_chosen_users_and_dask_workers(ranked_home):
    threads = score_batch(str(ranked_home.home), model="lightgbm", k=3, users=["user00", "user30"], run_id="run-threads")
    assert threads["users"] == 2 and threads["written"] == 6
    dask = run_score(str(ranked_home.home), dask_workers=2, model="lightgbm", k=3, users=["user00", "user30"], run_id="run-dask")
    assert dask["written"] == 6
    by_run = {
        r["run_id"]: r["items"]
        for r in db.fetch(
            ranked_home,
            """
        SELECT run_id, list(user_id || ':' || item_id ORDER BY user_id, rank) AS items FROM scores
        WHERE run_id IN ('run-threads', 'run-dask') GROUP BY run_id""",
        )
    }
    assert by_run["run-threads"] == by_run["run-dask"]


def test_shards_cover_every_partition_once():
    for shards in (1, 3, 4, 16, 40):
        buckets = [b for shard in shard_buckets(shards) for b in shard]
        assert sorted(buckets) == list(range(EVENT_PARTITIONS))


def test_scoring_refuses_a_model_whose_features_do_not_match(ranked_home):
    data = load_dataset(ranked_home)
    meta = artifacts.latest(ranked_home.models_dir, "lstm-attn")
    artifacts.check_schema("lstm-attn", meta, artifacts.feature_schema(data))  # fits: no error
    other = {**artifacts.feature_schema(data), "n_items": data.n_items + 1, "content": "text:other@1"}
    with pytest.raises(ReelsenseError, match=r"n_items: model 90, data 91.*content.*reelsense train"):
        artifacts.check_schema("lstm-attn", meta, other)
    with pytest.raises(ReelsenseError, match="unknown ranker"):
        score_batch(str(ranked_home.home), model="nope")
    # Explaining says what explaining needs, not the scoring advice (probe, 2026-12-03).
    from flows.explainers import load_explainers

    changed = replace(data, content_source="text:other@1")
    with pytest.raises(ReelsenseError, match="or score with a matching model"):
        artifacts.checked_meta(ranked_home.models_dir, "lstm-attn", changed, match="schema")
    with pytest.raises(ReelsenseError) as refused:
        load_explainers(ranked_home, changed, "cpu")
    assert str(refused.value).endswith("train on this data to explain with it: `reelsense train --models lstm-attn`") and "score with" not in str(refused.value)


def test_stale_model_advice_names_the_steps_new_items_need(ranked_home, monkeypatch):
    """Probe: after `ingest items`, evaluate said only "retrain", and training then stopped on the
    new items' missing content; an id-only model's advice names itself (it said bare `train`)."""
    data = load_dataset(ranked_home)
    meta = artifacts.latest(ranked_home.models_dir, "lstm-attn")
    schema = artifacts.feature_schema(data)
    assert artifacts.new_items_first("lstm-attn", meta, schema) == ""
    grown = {**schema, "n_items": data.n_items + 1}
    steps = "give new items their rows and content first (`reelsense ingest items FILE`, `reelsense extract`, `reelsense align`), then "
    assert artifacts.new_items_first("lstm-attn", meta, grown).endswith(steps)
    assert artifacts.new_items_first("popularity", meta, grown) == ""
    monkeypatch.setattr(artifacts, "feature_schema", lambda _data: grown)
    monkeypatch.setattr(artifacts, "fingerprint", lambda _data: "0" * 16)  # new items change the data's fingerprint too
    # A new item without its vector yet: the steps are named.
    content = data.content.copy()
    content[-1] = 0.0
    unextracted = replace(data, content=content)
    with pytest.raises(ReelsenseError) as stale:
        artifacts.checked_meta(ranked_home.models_dir, "lstm-attn", unextracted)
    retrain = "retrain it: `reelsense train --models lstm-attn` (it rebuilds the samples first)"
    assert str(stale.value).endswith(f"to leave them unscored, go straight on; either way, {retrain}")
    with pytest.raises(ReelsenseError) as scoring:  # score's check: lightgbm's features index items by training id
        artifacts.checked_meta(ranked_home.models_dir, "lightgbm", unextracted, match="schema")
    assert str(scoring.value).endswith("either way, rerun `reelsense train --models lightgbm` on this data, or score with a matching model")
    # Every item has its vector: those steps are done, and only the retrain is left (probe).
    with pytest.raises(ReelsenseError) as done:
        artifacts.checked_meta(ranked_home.models_dir, "lstm-attn", data)
    assert str(done.value).endswith(f"the items changed since training (every item has its content vector): {retrain}")
    assert artifacts.items_without_content(data) == [] and artifacts.items_without_content(unextracted) == [data.item_ids[-1]]
    # The item without its vector is named, with what to do if extract quarantined it (which extract
    # then skips: its advice alone went round in a loop, probe).
    assert f"1 has no content vector ({data.item_ids[-1]})" in str(stale.value) and "FROM quarantined_items" in str(stale.value)


def test_models_lists_the_registry(ranked_home, capsys):
    from flows.cli import main

    assert main(["--home", str(ranked_home.home), "models"]) == 0
    out = capsys.readouterr().out
    assert "lstm-attn" in out and "lightgbm" in out and "fused:aligned@tiny" in out


def test_score_command_line(ranked_home, capsys):
    from flows.cli import main

    assert main(["--home", str(ranked_home.home), "score", "--k", "2", "--users", "user00,user01", "--run-id", "cli-run"]) == 0
    assert "score-batch cli-run: 2 users x top 2 with lstm-attn: 4 rows written" in capsys.readouterr().out
    assert main(["--home", str(ranked_home.home), "score", "--k", "5", "--retrieval", "similarity", "--candidates", "3"]) == 2  # k > candidates: exit 2
    assert "need k <= candidates" in capsys.readouterr().err


# Issue 17, through the real CLI, on a copy of the trained tiny warehouse.


@pytest.fixture
def home(ranked_home: Warehouse, tmp_path: Path) -> Warehouse:
    """A copy of the trained tiny warehouse that a test may change."""
    shutil.copytree(ranked_home.home, tmp_path / "home")
    wh = Warehouse(tmp_path / "home")
    db.refresh_views(wh)  # the copied database's views may still read the original's files
    return wh


def _cli(wh: Warehouse, *args: str) -> int:
    return main(["--home", str(wh.home), *args])


def _engaged_scores(wh: Warehouse, run_id: str) -> int:
    return db.fetch(
        wh,
        """SELECT count(*) AS n FROM scores s WHERE s.run_id = $run AND EXISTS (SELECT 1 FROM events e
        WHERE e.user_id = s.user_id AND e.item_id = s.item_id AND e.event <> 'impression')""",
        {"run": run_id},
    )[0]["n"]


def test_score_never_recommends_an_item_the_user_engaged_with(home, capsys):
    # 90 items and 200 candidates: every item is a candidate; liked items used to come back.
    assert _cli(home, "score", "--k", "5", "--run-id", "masked") == 0
    assert _engaged_scores(home, "masked") == 0
    per_user = db.fetch(home, "SELECT count(*) AS n, list(rank ORDER BY rank) AS ranks FROM scores WHERE run_id = 'masked' GROUP BY user_id")
    assert len(per_user) == tiny_platform.USERS and all(r["ranks"] == [1, 2, 3, 4, 5] for r in per_user)
    # The user likes their rank-1 item now: the next run must not recommend it again.
    top = db.fetch(home, "SELECT item_id FROM scores WHERE run_id = 'masked' AND user_id = 'user00' AND rank = 1")[0]["item_id"]
    newest = tiny_platform.START + timedelta(days=30)
    write_csv(home.home / "like.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], [["user00", top, newest.isoformat(), "like", ""]])
    assert _cli(home, "ingest", "events", str(home.home / "like.csv")) == 0
    assert _cli(home, "score", "--k", "5", "--users", "user00", "--run-id", "after-like") == 0
    again = [r["item_id"] for r in db.fetch(home, "SELECT item_id FROM scores WHERE run_id = 'after-like'")]
    assert len(again) == 5 and top not in again
    assert _engaged_scores(home, "after-like") == 0


def test_a_user_with_fewer_unseen_items_than_k_gets_fewer_rows(home, capsys):
    items = sorted(r["item_id"] for r in db.fetch(home, "SELECT item_id FROM items"))
    liked = {r["item_id"] for r in db.fetch(home, "SELECT item_id FROM events WHERE user_id = 'user00'")}
    left = [i for i in items if i not in liked][:3]
    later = tiny_platform.START + timedelta(days=30)
    # user00 likes every other item (likes only: the model's heads stay as trained); the 3 left are
    # only shown, and a bare impression does not mask an item.
    rows = [["user00", i, (later + timedelta(minutes=n)).isoformat(), "like", ""] for n, i in enumerate(i for i in items if i not in left)]
    rows += [["user00", i, (later - timedelta(minutes=1)).isoformat(), "impression", ""] for i in left]
    assert _cli(home, "ingest", "events", str(write_csv(home.home / "liked.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], rows))) == 0
    for model in ("lstm-attn", "lightgbm"):
        assert _cli(home, "score", "--model", model, "--k", "5", "--users", "user00,user01", "--run-id", f"few-{model}") == 0
        got = db.fetch(
            home,
            "SELECT user_id, list(item_id ORDER BY rank) AS items, list(rank ORDER BY rank) AS ranks "
            "FROM scores WHERE run_id = $run GROUP BY user_id ORDER BY user_id",
            {"run": f"few-{model}"},
        )
        assert sorted(got[0]["items"]) == left and got[0]["ranks"] == [1, 2, 3], model
        assert got[1]["user_id"] == "user01" and got[1]["ranks"] == [1, 2, 3, 4, 5], model
        assert _engaged_scores(home, f"few-{model}") == 0


def test_scoring_shards_whose_users_hold_fewer_behaviours_than_training(home, capsys):
    # The tiny platform holds likes only; one watch-without-like by user00 gives the whole warehouse
    # `watch` and `like` heads, which the shards without user00 do not have. Scoring used to stop at
    # the first such shard ("behaviours: model [...] data [...]"), leaving a partial run.
    item = sorted(
        {r["item_id"] for r in db.fetch(home, "SELECT item_id FROM items")}
        - {r["item_id"] for r in db.fetch(home, "SELECT item_id FROM events WHERE user_id = 'user00'")}
    )[0]
    later = (tiny_platform.START + timedelta(days=30)).isoformat()
    path = write_csv(home.home / "watch.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], [["user00", item, later, "watch", "0.9"]])
    assert _cli(home, "ingest", "events", str(path)) == 0
    with pytest.raises(StaleSamples, match="`events` changed since `samples` was built"):
        load_dataset(home)  # training on the samples of yesterday's events would be silent and wrong
    assert ensure_samples(home) is not None and ensure_samples(home) is None  # rebuilt once, then current
    assert load_dataset(home).behaviours == ["engage", "watch", "like"]
    assert _cli(home, "train", "--models", "popularity") == 0
    assert _cli(home, "score", "--model", "popularity", "--k", "3", "--shards", "16", "--run-id", "pop") == 0
    per_user = db.fetch(home, "SELECT user_id, count(*) AS n FROM scores WHERE run_id = 'pop' GROUP BY user_id")
    assert len(per_user) == tiny_platform.USERS and {r["n"] for r in per_user} == {3}
    # lstm-attn, trained before the watch, still scores with the one head it has.
    assert _cli(home, "score", "--k", "3", "--run-id", "old-heads") == 0


def test_the_not_paired_note_says_to_train_sasrec_when_the_saved_one_is_of_other_data(home, tmp_path, capsys):
    """Probe: after new events, the note's `evaluate --models ...,sasrec` was refused (the saved sasrec
    was trained on the data before), and the note did not say to train it."""
    (tmp_path / "one.toml").write_text("[sasrec]\nmax_epochs = 1\n")
    assert _cli(home, "train", "--models", "sasrec", "--config", str(tmp_path / "one.toml")) == 0
    later = (tiny_platform.START + timedelta(days=30)).isoformat()
    event = write_csv(tmp_path / "one.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], [["user00", "i000", later, "like", ""]])
    assert _cli(home, "ingest", "events", str(event)) == 0
    assert _cli(home, "train", "--models", "popularity") == 0
    capsys.readouterr()
    assert _cli(home, "evaluate", "--models", "popularity") == 0
    out = capsys.readouterr().out
    assert (
        f"evaluate --models popularity,sasrec` pairs them, with a sasrec trained on this data (`reelsense --home {home.home} train --models sasrec`)" in out
    ), out


def test_a_row_of_a_fit_trained_by_older_ranker_code_says_so_and_how_to_refit_it(home, capsys):
    """Probe: after an upgrade `evaluate` measured the fits of the older code and said nothing."""
    from flows.report_rankers import results_table

    version = artifacts.latest(home.models_dir, "lstm-attn")["version"]
    meta = home.models_dir / "rankers" / "lstm-attn" / version / "meta.json"
    assert _cli(home, "evaluate", "--models", "lstm-attn", "--max-users", "20") == 0
    assert "other ranker code" not in capsys.readouterr().out  # trained by this code
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "code_version": "0123456789ab", "seed": 2}))  # as an upgrade leaves it
    assert _cli(home, "evaluate", "--models", "lstm-attn", "--max-users", "20") == 0
    results = json.loads((home.reports_dir / "results-quick.json").read_text())
    note = (
        f"of other ranker code than this evaluation's ({artifacts.code_version()}) in the table: lstm-attn (code 0123456789ab); "
        f"`reelsense --home {home.home} train --models lstm-attn --seed 2` retrains it with this code, "
        f"then `reelsense --home {home.home} evaluate --models lstm-attn --max-users 20` measures it"
    )
    assert results["models"]["lstm-attn"]["train_code"] == "0123456789ab"
    assert f"\na fit {note}\n" in capsys.readouterr().out
    assert f"\nA fit {note}.\n" in (home.reports_dir / "results-quick.md").read_text()
    shown = results_table(results, home.home)  # the report's, its commands as written (no flow run's home here)
    assert html.escape(f"a fit {note}".replace(f" --home {home.home}", "")) in shown, shown
    assert _cli(home, "train", "--models", "lstm-attn", "--seed", "2") == 0  # as advised
    assert artifacts.latest(home.models_dir, "lstm-attn")["seed"] == 2
    assert _cli(home, "evaluate", "--models", "lstm-attn", "--max-users", "20") == 0
    assert "other ranker code" not in capsys.readouterr().out


def test_the_older_code_note_refits_each_row_at_its_own_seed():
    """Review: one --seed for rows of several seeds refitted sasrec at lstm-attn's seed; a lightgbm
    over a base of this code takes its base's seed, so its own would fit another base."""
    from flows.console import older_code_note

    def row(seed, code="old", settings=None):
        return {"train_seed": seed, "train_code": code, "train_settings": settings}

    results = {
        "code_version": "new",
        "seed": 0,
        "models": {"sasrec": row(0, settings={"patience": 3}), "lstm-attn": row(2, settings={"max_epochs": 1}), "lightgbm": row(2)},
    }
    note = older_code_note(results)
    trains = "`reelsense train --models sasrec --config FILE` and `reelsense train --models lstm-attn,lightgbm --seed 2 --config FILE` retrain them"
    file = "(FILE: a rankers TOML whose [sasrec] table sets patience = 3 and whose [lstm-attn] table sets max_epochs = 1)"
    assert f"{trains} with this code {file}, then" in note, note
    assert note.startswith("fits of other ranker code than this evaluation's (new) in the table: sasrec (code old), lstm-attn (code old), lightgbm"), note
    results["models"]["lstm-attn"]["train_code"] = "new"
    results["models"]["sasrec"]["train_settings"] = None
    note = older_code_note(results)  # neither takes a --seed: one train (lightgbm's base then gives it its seed)
    assert "`reelsense train --models sasrec,lightgbm` retrains them with this code, then" in note, note
    results["models"] = {"sasrec": row(0, "new"), "popularity": row(None, None)}  # a meta.json without code_version: no claim
    assert older_code_note(results) is None


def test_following_the_note_on_a_lightgbm_over_another_lstm_attn_reuses_the_tables_lstm_attn(home, tmp_path, capsys):
    """Probe and review: the note's `train --models lightgbm` fitted another lstm-attn at seed 0 and
    default settings, where the table's was trained with --seed 1 and a rankers TOML."""
    from flows.report_rankers import results_table

    assert _cli(home, "evaluate", "--models", "lstm-attn,lightgbm") == 0
    (tmp_path / "one.toml").write_text("[lstm-attn]\nmax_epochs = 1\n")
    assert _cli(home, "train", "--models", "lstm-attn", "--seed", "1", "--config", str(tmp_path / "one.toml")) == 0
    capsys.readouterr()
    assert _cli(home, "evaluate", "--models", "lstm-attn") == 0
    out = capsys.readouterr().out
    results = json.loads((home.reports_dir / "results.json").read_text())
    table = results["models"]["lstm-attn"]
    assert table["train_seed"] == 1 and table["train_settings"] == {"max_epochs": 1}, table
    assert f"\n| lstm-attn | {table['version']} | 1 | max_epochs=1 |\n" in (home.reports_dir / "results.md").read_text()  # probe: results.json alone said
    assert "<td>1</td><td>max_epochs=1</td></tr>" in results_table(results, home.home)  # and the report's table
    advice = re.search(
        r"`reelsense --home \S+ train --models lightgbm --seed 1 --config FILE` trains one over it with the seed and settings of this table's lstm-attn "
        r"\(FILE: a rankers TOML whose \[lstm-attn\] table sets max_epochs = 1\), then `reelsense --home \S+ evaluate --models lightgbm` measures it",
        out,
    )
    assert advice, out
    # A kept row of a results.json written before rows recorded them gets them from its meta.json (review).
    for field in ("train_seed", "train_settings"):
        del results["models"]["lstm-attn"][field]
    (home.reports_dir / "results.json").write_text(json.dumps(results))
    assert _cli(home, "evaluate", "--models", "lightgbm") == 0
    assert advice.group(0) in capsys.readouterr().out
    assert _cli(home, "train", "--models", "lightgbm", "--seed", "1", "--config", str(tmp_path / "one.toml")) == 0  # as advised
    assert artifacts.latest(home.models_dir, "lstm-attn")["version"] == table["version"]  # reused, not fitted again
    assert artifacts.latest(home.models_dir, "lightgbm")["base_version"] == table["version"]
    capsys.readouterr()
    assert _cli(home, "evaluate", "--models", "lightgbm") == 0
    assert "trains one over it" not in capsys.readouterr().out


def test_a_lightgbm_alone_re_ranks_the_lstm_attn_trained_with_a_toml(home, tmp_path, caplog, capsys, monkeypatch):
    """Probe: `train --models lightgbm --force` over an lstm-attn of a rankers TOML trained a default
    lstm-attn as its base and made it the latest (review: and over one of --seed 1, one of seed 0)."""
    (tmp_path / "one.toml").write_text("[lstm-attn]\nmax_epochs = 1\n")
    assert _cli(home, "train", "--models", "lstm-attn", "--seed", "1", "--config", str(tmp_path / "one.toml")) == 0
    base = artifacts.latest(home.models_dir, "lstm-attn")["version"]
    assert _cli(home, "train", "--models", "lightgbm", "--force") == 0
    said = [r.getMessage() for r in caplog.records]  # the flow's log
    assert f"lstm-attn, the base of lightgbm: the seed and settings of its latest {base} (seed 1; max_epochs = 1); lightgbm trains with seed 1 too" in said, (
        said
    )
    assert artifacts.latest(home.models_dir, "lightgbm")["seed"] == 1  # the base's seed (probe: lightgbm took 0)
    meta = home.models_dir / "rankers" / "lstm-attn" / base / "meta.json"
    written = json.loads(meta.read_text())
    assert written["settings"] == {"max_epochs": 1}  # those the TOML gave, carried on as given
    meta.write_text(json.dumps({k: v for k, v in written.items() if k != "settings"}))  # saved before `settings` was recorded
    caplog.clear()
    assert _cli(home, "train", "--models", "lightgbm", "--force") == 0
    assert f"lstm-attn, the base of lightgbm: the seed and settings of its latest {base} (seed 1; max_epochs = 1); lightgbm trains with seed 1 too" in [
        r.getMessage() for r in caplog.records
    ]
    assert artifacts.latest(home.models_dir, "lstm-attn")["version"] == base  # reused, not fitted again
    assert artifacts.latest(home.models_dir, "lightgbm")["base_version"] == base
    latest_ctr = artifacts.latest(home.models_dir, "lightgbm")["version"]
    capsys.readouterr()
    assert _cli(home, "models") == 0  # each version's settings other than the defaults (probe: only meta.json told)
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    listed = {(row[0], row[1]): dict(zip(rows[0], row)) for row in rows[1:]}
    assert listed[("lstm-attn", base)]["settings"] == "max_epochs=1" and listed[("lightgbm", latest_ctr)]["settings"] == "-", listed
    # An id-only ranker's item-tower keys are no settings of it (probe: lstm-attn-no-content showed cold_neighbours=0).
    from ranker.registry import chosen_settings
    from ranker.sequence import LstmAttnConfig

    assert chosen_settings("lstm-attn-no-content", {**vars(LstmAttnConfig()), "cold_neighbours": 0, "dim": 8}) == {"dim": 8}
    # A default changed since the latest was trained: said (probe: "the settings of its latest" hid it).
    written = json.loads(meta.read_text())
    # Saved before `settings` was recorded and before borrowing was the default: cold_neighbours 0 is no choice of the user's (review).
    meta.write_text(json.dumps({**{k: v for k, v in written.items() if k != "settings"}, "config": {**written["config"], "cold_neighbours": 0}}))
    caplog.clear()
    assert _cli(home, "train", "--models", "lightgbm") == 0
    moved = f"the seed and settings of its latest {base} (seed 1; max_epochs = 1); today's defaults where it had others (cold_neighbours 0 -> 20; "
    moved += "a rankers TOML whose [lstm-attn] table sets cold_neighbours = 0 keeps them); lightgbm trains with seed 1 too"
    assert f"lstm-attn, the base of lightgbm: {moved}" in [r.getMessage() for r in caplog.records]
    # A stopped lstm-attn fit is never replaced by a base trained only for lightgbm (probe: 9 epochs lost).
    from test_fit_checkpoint import stopped_after

    from ranker.sequence import LstmAttn

    unfinished = artifacts.unfinished_fit(home.models_dir, "lstm-attn")
    stopped_after(1, lambda: LstmAttn(use_content=True), load_dataset(home), unfinished, monkeypatch)
    before = {name: artifacts.latest(home.models_dir, name)["version"] for name in ("lstm-attn", "lightgbm")}
    assert _cli(home, "train", "--models", "lightgbm", "--seed", "0") == 2  # seed 0: the latest (seed 1) is not reused
    assert "replace lstm-attn's stopped fit (1 epoch finished" in capsys.readouterr().err and unfinished.is_file()
    assert {name: artifacts.latest(home.models_dir, name)["version"] for name in before} == before  # nothing was trained


def test_evaluating_some_models_keeps_the_others_results(home, capsys):
    assert _cli(home, "evaluate", "--models", "lstm-attn,lightgbm", "--dataset", "tiny platform") == 0
    first = json.loads((home.reports_dir / "results.json").read_text())
    assert list(first["models"]) == ["lstm-attn", "lightgbm"] and first["kept_from_earlier"] == []
    capsys.readouterr()
    # Evaluating one model again used to overwrite the report with that model alone.
    assert _cli(home, "evaluate", "--models", "lightgbm") == 0
    out = capsys.readouterr().out
    again = json.loads((home.reports_dir / "results.json").read_text())
    assert list(again["models"]) == ["lstm-attn", "lightgbm"] and again["kept_from_earlier"] == ["lstm-attn"]
    assert again["models"]["lstm-attn"] == first["models"]["lstm-attn"]
    assert "lstm-attn *" in out and "kept from an earlier evaluate" in out
    markdown = (home.reports_dir / "results.md").read_text()
    assert "\\* Kept from an earlier evaluation of the same data, seed and users: lstm-attn." in markdown
    assert "\n| lstm-attn \\* | " in markdown and "\n| lightgbm | " in markdown  # probe: the tables marked no kept row
    # Every table of it: both protocols, the score-batch path's two retrievals, the CTR metrics, the models measured (probe).
    assert markdown.count("\n| lstm-attn \\* | ") == 6 and "\n| lstm-attn | " not in markdown, markdown
    # The row's training seed, for advice that must reuse the very model (probe).
    assert again["models"]["lightgbm"]["train_seed"] == 0
    assert markdown.startswith("# Results: tiny platform\n") and again["dataset"] == "tiny platform"  # the kept rows' name
    pairs = f"`reelsense --home {home.home} evaluate --models lstm-attn,lightgbm,sasrec` pairs them, with a sasrec trained on this data"
    assert f"\nNot paired: no sasrec was evaluated over the same users with lstm-attn, lightgbm; {pairs}" in (home.reports_dir / "results.md").read_text()
    assert f"not paired: no sasrec was evaluated over the same users with lstm-attn, lightgbm; {pairs}" in out  # review: no --home
    # Other data (one more event): earlier results no longer count.
    later = (tiny_platform.START + timedelta(days=30)).isoformat()
    assert (
        _cli(
            home,
            "ingest",
            "events",
            str(write_csv(home.home / "one.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], [["user00", "i000", later, "like", ""]])),
        )
        == 0
    )
    capsys.readouterr()
    assert _cli(home, "evaluate", "--models", "lstm-attn,popularity,lightgbm") == 2  # probe: named one stale model a run
    err = capsys.readouterr().err
    train_all = f"`reelsense --home {home.home} train --models lstm-attn,popularity,lightgbm` retrains them all"
    assert f"reelsense: error: 3 models cannot be evaluated on this warehouse's data; {train_all}, after any step a reason below names first:\n" in err
    assert "\n- [popularity] no trained popularity in " in err and "\n- [lstm-attn] lstm-attn " in err and err.count("\n") == 4
    assert (
        err.count("was trained on other data") == 2
        and "\n- [lightgbm] lightgbm " in err
        and " re-ranks lstm-attn " in err
        and "the command above retrains it (with lightgbm, which re-ranks it)" in err
    )
    assert "retrain it:" not in err  # one command for them all, not one per model
    assert "Nothing was evaluated" not in err  # no model of the three fits
    assert _cli(home, "train", "--models", "popularity") == 0
    assert _cli(home, "evaluate", "--models", "popularity") == 0
    assert list(json.loads((home.reports_dir / "results.json").read_text())["models"]) == ["popularity"]
    # lstm-attn retrained alone: lightgbm is the model refused, over the lstm-attn it was trained on,
    # and its command is the one that re-ranks the new lstm-attn (probe: the error named only the
    # old lstm-attn, and left the models that fit unsaid).
    lightgbm, old_base = (artifacts.latest(home.models_dir, "lightgbm")[k] for k in ("version", "base_version"))
    assert _cli(home, "train", "--models", "lstm-attn") == 0
    new_base = artifacts.latest(home.models_dir, "lstm-attn")["version"]
    capsys.readouterr()
    assert _cli(home, "evaluate", "--models", "popularity,lstm-attn,lightgbm") == 2
    err = capsys.readouterr().err
    assert f"reelsense: error: lightgbm {lightgbm} re-ranks lstm-attn {old_base}, which does not fit: lstm-attn {old_base} was trained on other data" in err
    assert f"; `reelsense --home {home.home} train --models lightgbm` re-ranks the latest lstm-attn {new_base}, which fits\n" in err
    fitting = f"`reelsense --home {home.home} evaluate --models popularity,lstm-attn` (with your other options)"
    assert err.rstrip().endswith(f"Nothing was evaluated; the models that fit: {fitting}")
    assert list(json.loads((home.reports_dir / "results.json").read_text())["models"]) == ["popularity"]
    # A latest lstm-attn of another seed is offered too: `train --models lightgbm` takes its seed and
    # settings (before it did, it was not offered: that train fitted one of seed 0; review).
    assert _cli(home, "train", "--models", "lstm-attn", "--seed", "3") == 0
    seeded = artifacts.latest(home.models_dir, "lstm-attn")["version"]
    capsys.readouterr()
    assert _cli(home, "evaluate", "--models", "lightgbm") == 2
    err = capsys.readouterr().err
    assert f"; `reelsense --home {home.home} train --models lightgbm` re-ranks the latest lstm-attn {seeded}, which fits\n" in err, err
    assert _cli(home, "train", "--models", "lightgbm") == 0
    assert artifacts.latest(home.models_dir, "lightgbm")["base_version"] == seeded == artifacts.latest(home.models_dir, "lstm-attn")["version"]
    # No lightgbm trained: said as such (review: "lightgbm  re-ranks lstm-attn , which does not fit").
    empty = home.home / "empty-models"
    shutil.copytree(home.models_dir / "rankers" / "lstm-attn", empty / "rankers" / "lstm-attn")
    with pytest.raises(artifacts.ModelMismatch, match=r"^no trained lightgbm in "):
        artifacts.check_with_base(empty, "lightgbm", load_dataset(home, MAX_HISTORY))


def _explanation(run_id: str, user: str, item: str) -> dict:
    return {
        **{name: None for name in EXPLANATIONS.schema.names},
        "run_id": run_id,
        "user_id": user,
        "item_id": item,
        "model_version": "lstm-attn@x",
        "summary": "why",
    }


def test_a_run_id_belongs_to_one_model_version(home, capsys):
    n = tiny_platform.USERS * 3
    others = {r["run_id"] for r in db.fetch(home, "SELECT DISTINCT run_id FROM explanations")}
    assert "c1" not in others
    assert _cli(home, "score", "--k", "3", "--run-id", "c1") == 0
    store.append(home, EXPLANATIONS, pa.Table.from_pylist([_explanation("c1", "user00", "i000"), _explanation("kept", "user00", "i000")], EXPLANATIONS.schema))
    capsys.readouterr()
    assert _cli(home, "score", "--k", "3", "--run-id", "c1", "--model", "lightgbm") == 2
    err = capsys.readouterr().err
    assert f"run id 'c1' already holds {n} rows of lstm-attn@" in err and "--replace" in err
    lstm = artifacts.latest(home.models_dir, "lstm-attn")["version"]
    complete = f"`reelsense --home {home.home} score --model lstm-attn --version {lstm} --run-id c1 --k 3` completes that run (with the --retrieval and "
    assert f"Leave out --run-id (or pick another) for a new run; {complete}" in err, err
    assert "without them it scores every user); --replace deletes run 'c1'" in err  # safe ways first
    assert len(err.strip().splitlines()) == 1
    held = db.fetch(home, "SELECT model_version, count(*) AS n FROM scores WHERE run_id = 'c1' GROUP BY ALL")
    assert len(held) == 1 and held[0]["n"] == n and held[0]["model_version"].startswith("lstm-attn@")
    # The same model version completes the run, duplicating nothing.
    assert _cli(home, "score", "--k", "3", "--run-id", "c1") == 0
    assert f"0 rows written, {n} already there" in capsys.readouterr().out
    # --replace removes the old run's report, scores and explanations first, and says so.
    report = run_dir(home, "c1")
    report.mkdir(parents=True)
    (report / "index.html").write_text("the old run's report")
    assert _cli(home, "score", "--k", "3", "--run-id", "c1", "--model", "lightgbm", "--replace") == 0
    assert f"{n} rows written, 0 already there; the old run's {n} scores, 1 explanation and report removed" in capsys.readouterr().out
    assert not report.exists()
    # --replace of a run that holds nothing says so, naming the near run (probe: a mistyped run id went unsaid).
    assert _cli(home, "score", "--k", "1", "--run-id", "c1x", "--replace") == 0
    warned = "reelsense: warning: --replace: no run 'c1x' holds scores, so nothing is replaced and a new run 'c1x' is scored (did you mean 'c1'"
    assert warned in capsys.readouterr().err
    rows = db.fetch(home, "SELECT user_id, model_version, rank FROM scores WHERE run_id = 'c1'")
    assert len(rows) == n and {r["model_version"].split("@")[0] for r in rows} == {"lightgbm"}
    assert sum(r["rank"] == 1 for r in rows) == tiny_platform.USERS
    # Only run c1's explanations went; other runs' (the fixture's own, and "kept") stay.
    left = {r["run_id"] for r in db.fetch(home, "SELECT DISTINCT run_id FROM explanations")}
    assert "c1" not in left and "kept" in left
    assert left == others | {"kept"}


def test_a_refused_replace_keeps_the_run(home, capsys):
    """Probe: events naming an item the trained lightgbm never saw, then `score --replace` with it:
    refused (the model does not fit), and the run it was to replace had already been deleted; and
    (probe, 2026-12-07) the same for content extracted since align."""
    assert _cli(home, "score", "--k", "3", "--run-id", "c1") == 0
    before = db.fetch(home, "SELECT user_id, item_id, rank FROM scores WHERE run_id = 'c1' ORDER BY ALL")
    later = (db.fetch(home, "SELECT max(event_ts) AS t FROM events")[0]["t"] + timedelta(days=1)).isoformat()
    new_item = write_csv(home.home / "new-item.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], [["user00", "brand-new", later, "like", ""]])
    assert _cli(home, "ingest", "events", str(new_item)) == 0
    capsys.readouterr()
    assert _cli(home, "score", "--k", "3", "--run-id", "c1", "--model", "lightgbm", "--replace") == 2
    err = capsys.readouterr().err
    steps = "1 has no content vector (brand-new): to score them, give them their rows and content first (`R ingest items FILE`, `R extract`, `R align`;"
    retrain = "either way, rerun `R train --models lightgbm` on this data"
    assert "does not fit the warehouse's features" in err
    assert all(part.replace("R", f"reelsense --home {home.home}") in err for part in (steps, retrain))
    assert db.fetch(home, "SELECT user_id, item_id, rank FROM scores WHERE run_id = 'c1' ORDER BY ALL") == before
    # Probe: an item ingested and extracted, not aligned, then `--replace` (as the refusal of a run
    # ranked from other data advises) with lstm-attn: the shards refused ("run align") after the run
    # had been removed. Its content is checked before now.
    items = write_csv(home.home / "new.csv", ["item_id", "title", "video_uri"], [["i0new", "brand new cooking clip #cooking", ""]])
    assert _cli(home, "ingest", "items", str(items)) == 0
    tiny_platform.add_item_vectors(home, "i0new", aligned=False)  # extracted, align not rerun
    capsys.readouterr()
    assert _cli(home, "score", "--k", "3", "--run-id", "c1", "--replace") == 2
    assert "1 item has raw embeddings but no fused:" in capsys.readouterr().err
    assert db.fetch(home, "SELECT user_id, item_id, rank FROM scores WHERE run_id = 'c1' ORDER BY ALL") == before


def test_a_failed_shard_says_what_the_run_holds_and_what_this_call_wrote(home, capsys, monkeypatch):
    """Probe: a rerun of a finished run whose shards all failed said "run c1 is incomplete (N rows
    from shards that finished are kept)", though it was complete and the call wrote nothing. Now it
    says what the run holds and what this call wrote, counted after every shard has ended (review:
    the count raced shards still writing: here the others write 1 s after the first one fails)."""
    import threading
    import time

    import flows.score

    assert _cli(home, "score", "--k", "3", "--run-id", "c1") == 0
    held = db.fetch(home, "SELECT count(*) AS n FROM scores WHERE run_id = 'c1'")[0]["n"]
    real, calls, lock = flows.score.retrieve, [], threading.Lock()

    def failing(*args, fail_all: bool, **kwargs):
        with lock:
            calls.append(1)
            first = len(calls) == 1
        if fail_all or first:
            raise ReelsenseError("a shard could not score")
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(flows.score, "retrieve", lambda *a, **kw: failing(*a, fail_all=True, **kw))
    capsys.readouterr()
    assert _cli(home, "score", "--k", "3", "--run-id", "c1") == 2
    err = capsys.readouterr().err
    assert f"run c1 holds {held} rows, 0 of them written now by the shards that finished" in err and "incomplete" not in err
    calls.clear()  # now only the first shard to score fails
    monkeypatch.setattr(flows.score, "retrieve", lambda *a, **kw: failing(*a, fail_all=False, **kw))
    assert _cli(home, "score", "--k", "3", "--run-id", "c2") == 2
    err = capsys.readouterr().err
    written = db.fetch(home, "SELECT count(*) AS n FROM scores WHERE run_id = 'c2'")[0]["n"]
    assert 0 < written < held and f"run c2 holds {written} rows, {written} of them written now" in err, err

    # A shard that found `samples` rebuilt mid-run: completing the run from the new data is refused
    # now (claim_run's digest), so the advice is --replace (review: it advised the refused completion).
    def stale(*args, **kwargs):
        with lock:
            calls.append(1)
            first = len(calls) == 1
        if first:
            raise StaleSamples("`samples` was rebuilt while this run read it (build x is gone); run it again")
        time.sleep(1.0)
        return real(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(flows.score, "retrieve", stale)
    assert _cli(home, "score", "--k", "3", "--run-id", "c3") == 2
    err = capsys.readouterr().err
    assert "`samples` was rebuilt while it ran, so where the data changed (an ingest) the run cannot be completed" in err, err
    assert f"`reelsense --home {home.home} score --model lstm-attn --version " in err and "--run-id c3 --replace` scores it again" in err


def test_a_version_of_another_model_is_named_as_such(home, capsys):
    """Probe: `score --model sasrec --version V`, V an lstm-attn version, said only "no model sasrec version V"."""
    version = sorted(p.name for p in (home.models_dir / "rankers" / "lstm-attn").iterdir() if p.is_dir())[-1]
    rankers = home.models_dir / "rankers"
    empty = next(m for m in ("bpr-mf", "itemknn", "popularity") if not (rankers / m / version).exists())
    (rankers / empty / version).mkdir(parents=True)  # a folder without meta.json is no version of it (review)
    assert _cli(home, "score", "--model", "sasrec", "--version", version) == 2  # no sasrec is trained here
    err = capsys.readouterr().err
    assert empty not in err, err
    # lightgbm, trained in the same second on the same data, can share the version's name
    assert f"{version} is a version of " in err and "lstm-attn" in err and "pass --model " in err, err


def test_a_larger_k_on_a_reported_run_says_the_report_covers_the_old_top_until_reported_again(home, capsys):
    """Probe: `score --run-id e1 --k 5` after a k=3 run and its report added ranks 4-5 without a word
    that the report and explanations stayed as they were. It says so, and `report` covers them."""
    assert _cli(home, "score", "--k", "3", "--run-id", "e1") == 0
    assert _cli(home, "report", "--run-id", "e1", "--plot-users", "1", "--pages", "1") == 0
    capsys.readouterr()
    assert _cli(home, "score", "--k", "5", "--run-id", "e1") == 0
    out = capsys.readouterr().out
    # the command names the home (probe: a bare `reelsense report` reported on the default home)
    assert f"the run's report predates these rows: `reelsense --home {home.home} report --run-id e1` brings it and its explanations up to date" in out
    assert _cli(home, "score", "--k", "5", "--run-id", "e1") == 0  # nothing written: nothing said
    assert "predates" not in capsys.readouterr().out
    assert _cli(home, "report", "--run-id", "e1", "--plot-users", "1", "--pages", "1") == 0
    counts = db.fetch(home, "SELECT (SELECT count(*) FROM scores WHERE run_id = 'e1') AS s, (SELECT count(*) FROM explanations WHERE run_id = 'e1') AS e")[0]
    assert counts["s"] == counts["e"] > 0


def test_the_recorded_evaluate_command_runs_as_written(ranked_home, tmp_path, monkeypatch):
    """Probe: a home or --dataset with a space was recorded unquoted in results.json, .md and the
    report, so the command could not be rerun as written."""
    import shlex
    import sys

    home = tmp_path / "a home"
    shutil.copytree(ranked_home.home, home)
    argv = ["reelsense", "--home", str(home), "evaluate", "--models", "lstm-attn", "--dataset", "my data", "--max-users", "5"]
    monkeypatch.setattr(sys, "argv", argv)
    assert main(argv[1:]) == 0
    results = json.loads((Warehouse(home).reports_dir / "results-quick.json").read_text())
    assert shlex.split(results["command"]) == argv


def test_score_names_unknown_users(home, capsys):
    assert _cli(home, "score", "--k", "2", "--users", "nobody,user00", "--run-id", "some") == 0
    captured = capsys.readouterr()
    assert "reelsense: warning: unknown users (no events): nobody; scoring the other 1" in captured.err
    assert "1 user x top 2" in captured.out
    assert _cli(home, "score", "--k", "2", "--users", "nobody,ghost", "--run-id", "none") == 2
    assert "none of the users given to --users has events: nobody, ghost" in capsys.readouterr().err


def test_score_says_which_stored_ids_users_cannot_pass(home, tmp_path, capsys):
    """Probe: `--users " u9 "` (a stored id with spaces at its ends) and `--users "a,b"` (one with a
    comma) were called users with no events; --users trims and splits them, and the error says so."""
    later = (db.fetch(home, "SELECT max(event_ts) AS t FROM events")[0]["t"] + timedelta(days=1)).isoformat()
    odd = write_csv(
        tmp_path / "odd.csv",
        ["user_id", "item_id", "event_ts", "event", "watch_ratio"],
        [[" u9 ", "i000", later, "like", ""], ["a,b", "i001", later, "like", ""], ["c,,d", "i001", later, "like", ""]],  # review: ',,' raised
    )
    assert _cli(home, "ingest", "events", str(odd)) == 0
    capsys.readouterr()
    assert _cli(home, "score", "--k", "2", "--users", " u9 ", "--run-id", "odd") == 2
    err = capsys.readouterr().err
    cut = "--users splits at commas and trims each id, so it cannot pass a stored id that holds a comma or spaces at its ends, and cut these"
    assert f"none of the users given to --users has events: u9; {cut} from such ids of `events` (u9 from ' u9 '): leave --users out" in err, err
    assert _cli(home, "score", "--k", "2", "--users", "a,b,c,ghost,user00", "--run-id", "odd") == 0
    err = capsys.readouterr().err
    assert "unknown users (no events): a, b, c, ghost; " in err and "(a from 'a,b'; b from 'a,b'; c from 'c,,d'): leave --users out" in err, err  # not ghost


def test_a_run_is_completed_or_extended_only_from_the_data_it_was_ranked_from(home, capsys, monkeypatch):
    """Probe: after new events, completing a run (`score --run-id R`, the README's way after a crash)
    wrote the changed users' new top lists beside their old ones (two items at rank 1, items engaged
    with since), and "N users x top K" said nothing of it."""
    import flows.score

    users, n = tiny_platform.USERS, tiny_platform.USERS * 3
    from flows.arguments import check_run

    assert _cli(home, "score", "--k", "3", "--run-id", "d1") == 0
    assert _cli(home, "score", "--k", "1", "--run-id", "mid", "--users", "user00") == 0
    assert _cli(home, "features") == 0  # `samples` rebuilt from the same events: the same data
    capsys.readouterr()
    assert store.partition_record(home, SCORES, "d1")["k"] == 3
    assert _cli(home, "score", "--k", "4", "--run-id", "d1") == 0  # extended by each user's rank 4
    assert f"{users} rows written, {n} already there" in capsys.readouterr().out
    assert store.partition_record(home, SCORES, "d1")["k"] == 4  # the run's --k now
    # Extended after `mid` was scored, d1 is still the older run (probe: runs were ordered by their
    # last row, so `prune --keep-runs 1` kept a run completed by a few rows over the one scored after
    # it, and `report` without --run-id and `explain` took it for the newest).
    runs = [r["run_id"] for r in db.analysis(home, "runs").to_pylist()]
    pair = db.fetch(home, "SELECT user_id, item_id FROM scores WHERE run_id = 'mid'")[0]
    by_explain = [r["run_id"] for r in db.analysis(home, "pair_runs", {"user": pair["user_id"], "item": pair["item_id"]}).to_pylist()]
    assert runs.index("mid") < runs.index("d1") and check_run(home, None)["run_id"] == "mid" and by_explain[:2] == ["mid", "d1"], (runs, by_explain)
    top = db.fetch(home, "SELECT item_id FROM scores WHERE run_id = 'd1' AND user_id = 'user00' AND rank = 1")[0]["item_id"]
    later = (db.fetch(home, "SELECT max(event_ts) AS t FROM events")[0]["t"] + timedelta(days=1)).isoformat()
    liked = write_csv(home.home / "liked.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], [["user00", top, later, "like", ""]])
    assert _cli(home, "ingest", "events", str(liked)) == 0
    capsys.readouterr()
    # Another model version on it, `samples` not rebuilt yet: the new engaged pair shows without it, and
    # the refusal does not advise the completion that would be refused (review)
    assert _cli(home, "score", "--k", "4", "--run-id", "d1", "--model", "lightgbm") == 2
    err = capsys.readouterr().err
    assert "run 'd1' cannot be completed either: it was ranked from other data than the warehouse holds now" in err, err
    assert "completes that run" not in err and "--replace deletes run 'd1' (its scores, explanations and report)" in err
    refused = "run id 'd1' was ranked from other data than the warehouse holds now (`events`, `items` or the content vectors changed"
    assert _cli(home, "score", "--k", "4", "--run-id", "d1") == 2  # the CLI's check too, before any flow
    assert refused in capsys.readouterr().err
    # `samples` is current now: the CLI refuses before a flow starts
    monkeypatch.setattr(flows.score, "run_score", lambda *a, **k: pytest.fail("a flow started for a run of other data"))
    assert _cli(home, "score", "--k", "5", "--run-id", "d1") == 2
    assert refused in capsys.readouterr().err
    monkeypatch.undo()
    ranks = db.fetch(home, "SELECT user_id, list(rank ORDER BY rank) AS r FROM scores WHERE run_id = 'd1' GROUP BY user_id")
    assert len(ranks) == users and all(r["r"] == [1, 2, 3, 4] for r in ranks)  # nothing added
    assert _cli(home, "score", "--k", "4", "--run-id", "d1", "--replace") == 0  # scored again, from the current data
    ranks = db.fetch(home, "SELECT user_id, list(rank ORDER BY rank) AS r, list(item_id) AS i FROM scores WHERE run_id = 'd1' GROUP BY user_id")
    assert len(ranks) == users and all(r["r"] == [1, 2, 3, 4] for r in ranks)
    assert top not in next(r["i"] for r in ranks if r["user_id"] == "user00")  # engaged with since: not served
    kept = store.partition_record(home, SCORES, "d1")
    assert kept is not None and kept["ranked_from"] == ranking_inputs(home)  # the replaced run's: the current data
    # A like of an item the user engaged with already changes `samples` alone: the CLI cannot see it
    # before the rebuild, so a version conflict's completion advice is hedged, and the flow refuses.
    again = (tiny_platform.START + timedelta(days=90)).isoformat()
    repeat = write_csv(home.home / "again.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], [["user00", top, again, "like", ""]])
    assert _cli(home, "ingest", "events", str(repeat)) == 0
    capsys.readouterr()
    assert _cli(home, "score", "--k", "4", "--run-id", "d1", "--model", "lightgbm") == 2
    assert "--run-id d1 --k 4` completes that run if the histories it ranked from did not change (checked once `samples` is rebuilt)" in capsys.readouterr().err
    assert _cli(home, "score", "--k", "4", "--run-id", "d1") == 2  # asked by the flow, after it rebuilds `samples`
    assert refused in capsys.readouterr().err
    # A run scored before runs kept their digest is completed as before: nothing to compare.
    old = db.fetch(home, "SELECT * FROM scores WHERE run_id = 'd1' AND user_id = 'user00'")
    now = datetime.now(timezone.utc)  # the newest run by when it was first scored: prune keeps it below
    store.append(home, SCORES, pa.Table.from_pylist([{**r, "run_id": "old", "scored_at": now} for r in old]))
    db.refresh_views(home)
    assert store.partition_record(home, SCORES, "old") is None
    capsys.readouterr()
    assert _cli(home, "score", "--k", "4", "--run-id", "old") == 0
    out, err = capsys.readouterr()
    assert f"{users * 4 - 4} rows written, 4 already there" in out
    assert "warning: run 'old' keeps no record of the data it was ranked from" in err and "`--replace` scores run 'old' again" in err
    assert store.partition_record(home, SCORES, "old") is None  # its rows were not ranked from it: none kept
    # Such a run keeps no --k either: its largest rank is all that is known of it (probe: a --k 1000
    # run of fewer items a user was said to be "scored with --k 85").
    assert _cli(home, "score", "--k", "2", "--run-id", "old") == 2
    err = capsys.readouterr().err
    assert "run id 'old' holds each user's top 4 at most (its largest rank: it was scored with --k 4 or more)" in err
    # and its completion is not said as if checked (probe: the warning came only when it ran)
    # more users than it names: the query that lists them, and what leaving them out does (probe: run as printed, it extended the run)
    listed = f"and --users naming its {users} users, which `reelsense --home {home.home} sql \"SELECT DISTINCT user_id FROM scores WHERE run_id = 'old'"
    assert f"--run-id old --k 4` completes that run (with the --retrieval and --candidates it was started with, {listed}" in err, err
    assert "lists: without them it scores every user), unchecked: the run keeps no record of the data" in err
    items = db.fetch(home, "SELECT count(*) AS n FROM items")[0]["n"]
    assert _cli(home, "score", "--k", str(items + 5), "--run-id", "big", "--users", "user00") == 0
    assert max(r["rank"] for r in db.fetch(home, "SELECT rank FROM scores WHERE run_id = 'big'")) < items + 5
    capsys.readouterr()
    assert _cli(home, "score", "--k", "2", "--run-id", "big", "--users", "user01") == 2
    err = capsys.readouterr().err
    assert f"run id 'big' was scored with --k {items + 5}, and this run asks for the top 2" in err
    # its completing command names the run's users (probe: without them it scored every user)
    assert f"--run-id big --k {items + 5} --users=user00` completes that run (with the --retrieval and --candidates it was started with)" in err, err
    # a run id that starts with "-" is passed as --run-id=-x, which the parser reads (probe: `--run-id -x` it refuses)
    from flows.cli import build_parser
    from flows.console import run_option

    assert build_parser().parse_args(["score", *run_option("-x").split(" ")]).run_id == "-x" and run_option("x") == "--run-id x"
    # A record that cannot be read is named, not taken for none (which would turn the check off).
    made = home.table_dir(SCORES) / "run_id=d1" / ".made_from.json"
    good = made.read_text()
    made.write_text("{not json")
    assert _cli(home, "score", "--k", "4", "--run-id", "d1") == 2
    assert f"{made} cannot be read" in capsys.readouterr().err
    made.write_text(good)
    # Pruned with its run (prune keeps the newest runs): no record outlives its rows, nor does the
    # record of a run that wrote none.
    store.record_partition(home, SCORES, "none-written", {"ranked_from": "x"})
    assert _cli(home, "prune", "--keep-runs", "2") == 0  # big and old
    assert "kept 2 runs (big, old)" in capsys.readouterr().out
    assert store.partition_record(home, SCORES, "d1") is None and not (home.table_dir(SCORES) / "run_id=d1").exists()
    assert not (home.table_dir(SCORES) / "run_id=none-written").exists() and (home.table_dir(SCORES) / "run_id=old").is_dir()


def test_score_names_users_with_events_but_no_positive_interaction(home, capsys, monkeypatch):
    """Probe: users with only an impression or a short watch were dropped unsaid ("0 users ... 0 rows
    written", exit 0): nothing to score them from (no positive, so no row in samples)."""
    import flows.score

    item = db.fetch(home, "SELECT min(item_id) AS i FROM items")[0]["i"]
    later = (tiny_platform.START + timedelta(days=30)).isoformat()
    rows = [["uimp", item, later, "impression", ""], ["uweak", item, later, "watch", "0.1"]]
    assert _cli(home, "ingest", "events", str(write_csv(home.home / "idle.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], rows))) == 0
    capsys.readouterr()
    assert _cli(home, "score", "--k", "2", "--users", "uimp,uweak", "--run-id", "idle") == 2
    err = capsys.readouterr().err
    assert "none of the users given to --users has a positive interaction yet" in err and "uimp, uweak" in err, err
    assert not db.fetch(home, "SELECT count(*) AS n FROM scores WHERE run_id = 'idle'")[0]["n"]
    assert _cli(home, "score", "--k", "2", "--users", "uimp,user00", "--run-id", "some") == 0
    out = capsys.readouterr().out
    assert "1 user x top 2 with lstm-attn: 2 rows written, 0 already there; 1 user with events but no positive interaction yet not scored (uimp);" in out
    assert _cli(home, "score", "--k", "2", "--run-id", "all") == 0  # every user: the two are named too
    assert "2 users with events but no positive interaction yet not scored (uimp, uweak);" in capsys.readouterr().out
    # `samples` is current now, so the CLI refuses them before a flow starts (probe: after its 13 s start)
    monkeypatch.setattr(flows.score, "run_score", lambda *a, **k: pytest.fail("a flow started for users with nothing to score"))
    assert _cli(home, "score", "--k", "2", "--users", "uweak,uimp,ghost", "--run-id", "idle") == 2
    err = capsys.readouterr().err
    assert "none of the users given to --users has a positive interaction yet" in err and "uimp, uweak; unknown users (no events): ghost" in err, err


def test_score_refuses_bad_arguments_before_starting_a_flow(home, capfd, monkeypatch):
    import flows.score

    monkeypatch.setattr(flows.score, "run_score", lambda *a, **k: pytest.fail("a flow started for bad arguments"))
    for args, message in (
        (["--k", "5", "--retrieval", "similarity", "--candidates", "4"], "need k <= candidates"),
        (["--candidates", "50"], "--candidates applies to --retrieval similarity"),
        (["--replace"], "--replace starts an existing run over and needs the run's --run-id"),  # probe: a new run, silently
    ):
        assert _cli(home, "score", *args) == 2, args
        err = capfd.readouterr().err
        assert f"reelsense: error: {message}" in err and "Traceback" not in err, args
    assert _cli(home, "score", "--model", "nope") == 2  # the ranker check of train and evaluate, not argparse's choices
    assert "unknown ranker 'nope'; pass one of " in capfd.readouterr().err
    for args, message in (
        (["--users", ""], "--users '' names no user"),
        (["--users", ",,"], "--users ',,' names no user"),
        (["--users", "user00,,user01"], "--users 'user00,,user01' has an empty name"),  # probe: dropped unsaid, as --models refuses
    ):
        assert _cli(home, "score", *args) == 2 and message in capfd.readouterr().err
    # probe: --k abc was argparse's "invalid int value", and --k 0 was refused only after startup
    for args in (["--device", "nope"], ["--dask-workers", "-1"], ["--k", "0"], ["--k", "-3"], ["--k", "abc"]):  # probe: a torch traceback; a hang
        with pytest.raises(SystemExit) as exit_info:
            _cli(home, "score", *args)
        assert exit_info.value.code == 2 and "expected" in capfd.readouterr().err, args
    # both Dask options: the running scheduler was used and --dask-workers silently ignored
    assert _cli(home, "score", "--dask-workers", "2", "--dask-address", "tcp://127.0.0.1:1") == 2
    assert "--dask-workers 2 starts a local cluster and --dask-address tcp://127.0.0.1:1 uses a running one: pass one of them" in capfd.readouterr().err
    # probe: no scheduler there, or no address at all: a 30 s wait, then a page of tracebacks
    assert _cli(home, "score", "--dask-address", "tcp://127.0.0.1:1") == 2
    assert "--dask-address tcp://127.0.0.1:1: nothing accepts connections there (Connection refused)" in capfd.readouterr().err
    assert _cli(home, "score", "--dask-address", "not a url") == 2
    assert "--dask-address 'not a url' is not a scheduler address (missing port number" in capfd.readouterr().err
    assert _cli(home, "score", "--dask-address", "tpc://127.0.0.1:8786") == 2  # review: a typo'd scheme passed the check
    assert "--dask-address 'tpc://127.0.0.1:8786' is not a scheduler address (unknown address scheme 'tpc'" in capfd.readouterr().err
    import torch

    if not torch.cuda.is_available():  # probe finding: --device cuda on a CPU machine was a traceback per shard
        with pytest.raises(SystemExit) as exit_info:
            _cli(home, "score", "--device", "cuda")
        assert exit_info.value.code == 2 and "no CUDA device torch can use; pass --device cpu or auto" in capfd.readouterr().err
    for command in ("train", "evaluate"):  # probe finding: `--models ,,` evaluated every model
        assert _cli(home, command, "--models", ",,") == 2
        assert "--models ',,' names no ranker" in capfd.readouterr().err


def test_lightgbm_reranks_the_base_version_it_was_trained_on_not_the_latest(home):
    """A newer lstm-attn (trained after lightgbm) must not slide under the older lightgbm."""
    from ranker.data import MAX_HISTORY

    rankers = home.models_dir / "rankers" / "lstm-attn"
    trained_on = artifacts.latest(home.models_dir, "lightgbm")["base_version"]
    assert trained_on == artifacts.latest(home.models_dir, "lstm-attn")["version"]
    newer = rankers / "zz-newer"
    shutil.copytree(rankers / trained_on, newer)
    meta = json.loads((newer / "meta.json").read_text())
    (newer / "meta.json").write_text(json.dumps({**meta, "version": "zz-newer"}))
    (rankers / "LATEST").write_text("zz-newer\n")
    data = load_dataset(home, MAX_HISTORY)
    model = artifacts.load_with_base(home.models_dir, "lightgbm", data, "cpu", match="schema")
    assert model.base.version == trained_on
    assert artifacts.load(home.models_dir, "lstm-attn", data, {}, "cpu", match="schema").version == "zz-newer"


def test_a_damaged_latest_is_named_with_its_ways_out_and_train_trains_anew(home, capsys, monkeypatch):
    """Probe: an emptied LATEST stopped `train` with "no model lstm-attn version  in ..." (only
    --force got past it, unsaid), and `score` said the same."""
    marker = home.models_dir / "rankers" / "lstm-attn" / "LATEST"
    before = marker.read_text().strip()
    assert _cli(home, "score", "--model", "lstm-attn", "--k", "3", "--run-id", "r1") == 0  # a run, for report and prune below
    spare = marker.parent / "zz-spare"  # a version no run pins and no lightgbm re-ranks: prune would delete it
    shutil.copytree(marker.parent / before, spare)
    meta = json.loads((spare / "meta.json").read_text())
    (spare / "meta.json").write_text(json.dumps({**meta, "version": "zz-spare"}))
    marker.write_text("")
    assert _cli(home, "score", "--model", "lstm-attn", "--k", "3") == 2
    err = capsys.readouterr().err
    ways_out = (
        f"{marker} names no readable version (it is empty): write one of its 2 readable versions (the newest: zz-spare) "
        f"into that file, or `reelsense --home {home.home} train --models lstm-attn` trains one anew"
    )
    assert ways_out in err, err
    for command in (["explain", "--user", "user00", "--item", "i001"], ["evaluate", "--models", "lstm-attn"]):
        assert _cli(home, *command) == 2
        assert ways_out in capsys.readouterr().err, command
    # The run's own lstm-attn still explains it (review: the damaged LATEST stopped its report too).
    assert _cli(home, "report", "--run-id", "r1") == 0, capsys.readouterr().err
    capsys.readouterr()
    versions = sorted(p.name for p in marker.parent.iterdir())
    assert _cli(home, "prune", "--keep-runs", "1") == 2  # review: it deleted every version of lstm-attn that no run pinned
    assert f"nothing pruned: prune keeps each ranker's latest version, and {ways_out}" in capsys.readouterr().err
    assert sorted(p.name for p in marker.parent.iterdir()) == versions
    said: list[str] = []
    monkeypatch.setattr("flows.rank.say", lambda message, *args, **kwargs: said.append(message))
    assert _cli(home, "train", "--models", "lstm-attn") == 0
    assert f"{marker} names no readable version (it is empty): training lstm-attn anew; the version it saves becomes the latest" in said, said
    assert marker.read_text().strip() not in ("", before) and artifacts.latest(home.models_dir, "lstm-attn")["seed"] == 0
    marker.unlink()  # a LATEST deleted by hand: prune refuses too (review: it kept no version as the latest)
    assert _cli(home, "prune", "--keep-runs", "1") == 2
    assert f"nothing pruned: prune keeps each ranker's latest version, and {marker} is missing, though lstm-attn has 3 saved version(s): " in (
        capsys.readouterr().err
    )
    assert spare.is_dir()


def test_a_base_that_no_longer_fits_is_named_as_lightgbms_with_both_to_retrain(home, capsys):
    """Probe: `score --model lightgbm` named only lstm-attn and said to rerun `reelsense train`."""
    base = artifacts.latest(home.models_dir, "lightgbm")["base_version"]
    path = home.models_dir / "rankers" / "lstm-attn" / base / "meta.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "feature_schema": {**meta["feature_schema"], "content": "text:other-model"}}))
    assert _cli(home, "score", "--model", "lightgbm", "--k", "3") == 2
    err = capsys.readouterr().err
    assert f"lstm-attn {base} does not fit the warehouse's features (content: model 'text:other-model'" in err
    assert err.rstrip().endswith(f"; retrain it with lightgbm, which re-ranks it: `reelsense --home {home.home} train --models lstm-attn,lightgbm`")


def test_a_run_of_another_model_with_a_model_that_does_not_fit_names_the_misfit_first(home, capsys):
    """Probe: the run conflict's advice (--replace) came first, and --replace then stopped on the model."""
    assert _cli(home, "score", "--k", "3", "--run-id", "c1") == 0  # lstm-attn's run
    base = artifacts.latest(home.models_dir, "lightgbm")["base_version"]
    path = home.models_dir / "rankers" / "lstm-attn" / base / "meta.json"
    meta = json.loads(path.read_text())
    capsys.readouterr()
    assert _cli(home, "score", "--k", "3", "--run-id", "c1", "--model", "lightgbm") == 2
    assert "run id 'c1' already holds" in capsys.readouterr().err  # lightgbm fits: the conflict is the error
    path.write_text(json.dumps({**meta, "feature_schema": {**meta["feature_schema"], "content": "text:other-model"}}))
    assert _cli(home, "score", "--k", "3", "--run-id", "c1", "--model", "lightgbm") == 2
    err = capsys.readouterr().err
    assert f"lightgbm {artifacts.latest(home.models_dir, 'lightgbm')['version']} re-ranks lstm-attn {base}, which does not fit" in err
    assert "already holds" not in err and len(err.strip().splitlines()) == 1


def test_the_newer_base_is_not_offered_while_items_lack_content(home, capsys):
    """Probe: "either way, ... over the latest lstm-attn, which fits" followed the advice to extract
    new items first, which makes that lstm-attn stale too."""
    items = home.home / "new-items.csv"
    items.write_text("item_id,title,video_uri\nzz-new,a video without media,\n")
    assert _cli(home, "ingest", "items", str(items)) == 0
    assert _cli(home, "train", "--models", "lstm-attn") == 0
    capsys.readouterr()
    assert _cli(home, "evaluate", "--models", "lightgbm") == 2
    err = capsys.readouterr().err
    assert "1 has no content vector (zz-new)" in err and "which fits" not in err, err


def test_rerank_never_keeps_a_candidate_the_model_cannot_score():
    """sasrec-content scores an item without content -inf: it is dropped like padding."""
    from ranker.data import Queries
    from ranker.scoring import rerank

    class ByItem:  # scores item i as i, except item 3 (no content): -inf
        def score_items(self, data, queries, items):
            return np.where(items == 3, -np.inf, items.astype(np.float32))

    queries = Queries(np.array(["u"]), np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64), np.zeros((1, 2), np.float32))
    items, scores = rerank(ByItem(), None, queries, np.array([[3, 1, 2, 0]]), k=4)
    assert items.tolist() == [[2, 1, 0, 0]] and np.isneginf(scores[0, 2:]).all()


def test_model_top_keeps_the_models_best_unseen_items_the_same_way_every_time():
    """--retrieval model: the model's own scores of every item, best first; engaged items,
    padding, -inf and NaN never kept (a row with fewer than k others ends in 0s); ties in index
    order, so the same scores always give the same rows."""
    from ranker.data import Queries
    from ranker.scoring import model_top

    class Fixed:  # item scores per user; item 5 has no content (-inf), item 6 NaN
        def score_all(self, data, queries):
            base = np.array([[9, 1, 4, 4, 4, -np.inf, np.nan], [9, 7, 6, 5, 4, -np.inf, np.nan]], np.float32)
            return base[[int(u[1:]) for u in queries.users]]

    class Data:
        n_items = 6

    queries = Queries(np.array(["u0", "u1"]), np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64), np.zeros((2, 2), np.float32))
    engaged = (np.array([1, 1]), np.array([1, 2]))  # u1 engaged with items 1 and 2
    items, scores = model_top(Fixed(), Data(), queries, 4, engaged=engaged, block=1)
    assert items.tolist() == [[2, 3, 4, 1], [3, 4, 0, 0]]
    assert scores[0].tolist() == [4, 4, 4, 1] and np.isneginf(scores[1, 2:]).all()
    assert model_top(Fixed(), Data(), queries, 2, engaged=engaged)[0].tolist() == [[2, 3], [3, 4]]  # a tie at the cut: lower index


def test_ties_at_the_cut_go_to_the_lower_index_whatever_the_partition_does():
    from ranker.scoring import top_by_index

    scored = np.zeros((3, 41), np.float32)
    scored[:, 40] = 5
    scored[1, [7, 30]] = 2
    scored[2, :] = -np.inf
    scored[2, 33] = 1
    before = scored.copy()
    assert top_by_index(scored, 5).tolist() == [[40, 0, 1, 2, 3], [40, 7, 30, 0, 1], [33, 0, 1, 2, 3]]
    assert np.array_equal(scored, before)  # restored


def test_similarity_retrieval_serves_only_its_candidates(ranked_home):
    """score --retrieval similarity re-ranks `--candidates` similarity candidates: with 2 candidates
    and k 5 it is refused before a flow starts; with k 2 each user gets exactly those 2 candidates.
    The default, the model's own top k, differs from them for some user."""
    with pytest.raises(ReelsenseError, match="--candidates at least --k"):
        score_batch(str(ranked_home.home), model="lstm-attn", k=5, n_candidates=2, retrieval="similarity")
    by_similarity = score_batch(str(ranked_home.home), model="lstm-attn", k=2, n_candidates=2, retrieval="similarity", run_id="sim")
    by_model = score_batch(str(ranked_home.home), model="lstm-attn", k=2, run_id="own")
    assert by_similarity["retrieval"] == "similarity" and by_model["retrieval"] == "model"
    served = {run: _served(ranked_home, run) for run in ("sim", "own")}
    # The candidates as a shard computes them: the same history length and whole-table popularity.
    data = load_dataset(ranked_home, MAX_HISTORY, popularity=warehouse_popularity(ranked_home, MAX_HISTORY))
    queries = current_queries(data)
    candidates = similarity_candidates(data, queries, 2, engaged=engaged_pairs(data, queries, *_engaged_lists(ranked_home)))
    expected = {u: {data.item_ids[i] for i in row if i} for u, row in zip(queries.users, candidates)}
    assert served["sim"] == expected
    assert served["own"] != served["sim"]


def _engaged_lists(wh: Warehouse) -> tuple[list[str], list[str]]:
    engaged = db.analysis(wh, "engaged_items", {"buckets": list(range(EVENT_PARTITIONS))})
    return engaged.column("user_id").to_pylist(), engaged.column("item_id").to_pylist()


def _served(wh: Warehouse, run_id: str) -> dict[str, set[str]]:
    rows = db.fetch(wh, "SELECT user_id, item_id FROM scores WHERE run_id = ?", [run_id])
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["user_id"], set()).add(r["item_id"])
    return out


def test_the_score_line_gives_a_slow_rate_its_digits_and_one_row_its_number():
    """Probe: 4 rows in 9 s printed "(0 rows/s)", one row a second "(1 rows/s)"."""
    from flows.console import score_line

    base = {"run_id": "r", "users": 1, "k": 4, "model": "popularity@v", "duplicates": 0}
    assert score_line({**base, "written": 4, "seconds": 9.0}).endswith("; 9.0s (0.44 rows/s)")
    assert score_line({**base, "written": 1, "seconds": 1.0}).endswith("1 row written, 0 already there; 1.0s (1 row/s)")
    assert score_line({**base, "written": 4000, "seconds": 1.4}).endswith("; 1.4s (2857 rows/s)")
    assert score_line({**base, "written": 0, "seconds": 1.0}).endswith("0 rows written, 0 already there; 1.0s")
    assert score_line({**base, "written": 1, "seconds": 20_000.0}).endswith("; 20000.0s")  # under 0.005 a second: no rate (review: "5e-05")
