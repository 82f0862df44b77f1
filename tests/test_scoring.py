"""score-batch: candidates by embedding similarity, re-ranking, the scores table, idempotent run
ids, Dask shards, and the registry refusing a model that does not fit the data."""

from __future__ import annotations

import numpy as np
import pytest

import tiny_platform
from flows.score import score_batch, run_score, shard_buckets
from ranker import artifacts
from ranker.data import load_dataset
from ranker.scoring import current_queries, similarity_candidates
from warehouse import db
from warehouse.errors import ReelsenseError
from warehouse.schemas import EVENT_PARTITIONS


def test_current_queries_end_with_each_users_latest_positive(ranked_home):
    data = load_dataset(ranked_home)
    queries = current_queries(data)
    assert sorted(queries.users) == sorted(set(data.queries.users)) == [f"user{u:02d}" for u in range(tiny_platform.USERS)]
    latest = {r["user_id"]: r["item_id"] for r in db.fetch(ranked_home, """
        SELECT user_id, arg_max(item_id, event_ts) AS item_id FROM events GROUP BY user_id""")}
    for user, newest in zip(queries.users, queries.hist_items[:, -1]):
        assert data.item_ids[newest] == latest[user]


def test_candidates_are_unseen_items_of_the_users_current_topic(ranked_home):
    data = load_dataset(ranked_home)
    queries = current_queries(data)
    candidates = similarity_candidates(data, queries, 4)
    for q in range(len(queries)):
        history = set(queries.hist_items[q]) - {0}
        assert not history & set(candidates[q]), "a candidate was already in the history"
        recent = [tiny_platform.topic_of(data.item_ids[i]) for i in queries.hist_items[q, -5:]]
        top_topic = max(set(recent), key=recent.count)
        assert tiny_platform.topic_of(data.item_ids[candidates[q, 0]]) == top_topic


def test_score_batch_writes_top_k_per_user_once_per_run_id(ranked_home):
    first = score_batch(str(ranked_home.home), model="lstm-attn", k=5, n_candidates=12, run_id="run-a")
    assert first["users"] == tiny_platform.USERS and first["written"] == tiny_platform.USERS * 5
    again = score_batch(str(ranked_home.home), model="lstm-attn", k=5, n_candidates=12, run_id="run-a")
    assert again["written"] == 0 and again["duplicates"] == tiny_platform.USERS * 5
    rows = db.fetch(ranked_home, "SELECT user_id, count(*) AS n, list(rank ORDER BY score DESC) AS ranks, "
                                 "any_value(model_version) AS v FROM scores WHERE run_id = 'run-a' GROUP BY user_id")
    assert len(rows) == tiny_platform.USERS
    assert all(r["n"] == 5 and r["ranks"] == [1, 2, 3, 4, 5] and r["v"].startswith("lstm-attn@") for r in rows)
    # Users who shifted are recommended their new topic, users who never shifted their only one.
    hits = db.fetch(ranked_home, "SELECT user_id, item_id FROM scores WHERE run_id = 'run-a' AND rank = 1")
    right = [tiny_platform.topic_of(h["item_id"]) == tiny_platform.TOPICS[(int(h["user_id"][4:]) % 3 + (int(h["user_id"][4:]) < tiny_platform.SHIFTERS)) % 3]
             for h in hits]
    assert np.mean(right) >= 0.9


def test_lightgbm_and_chosen_users_and_dask_workers(ranked_home):
    threads = score_batch(str(ranked_home.home), model="lightgbm", k=3, users=["user00", "user30"], run_id="run-threads")
    assert threads["users"] == 2 and threads["written"] == 6
    dask = run_score(str(ranked_home.home), dask_workers=2, model="lightgbm", k=3, users=["user00", "user30"], run_id="run-dask")
    assert dask["written"] == 6
    by_run = {r["run_id"]: r["items"] for r in db.fetch(ranked_home, """
        SELECT run_id, list(user_id || ':' || item_id ORDER BY user_id, rank) AS items FROM scores
        WHERE run_id IN ('run-threads', 'run-dask') GROUP BY run_id""")}
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


def test_models_lists_the_registry(ranked_home, capsys):
    from flows.cli import main

    assert main(["--home", str(ranked_home.home), "models"]) == 0
    out = capsys.readouterr().out
    assert "lstm-attn" in out and "lightgbm" in out and "fused:aligned@tiny" in out


def test_score_command_line(ranked_home, capsys):
    from flows.cli import main

    assert main(["--home", str(ranked_home.home), "score", "--k", "2", "--users", "user00,user01", "--run-id", "cli-run"]) == 0
    assert "score-batch cli-run: 2 users x top 2 with lstm-attn: 4 rows written" in capsys.readouterr().out
    assert main(["--home", str(ranked_home.home), "score", "--k", "5", "--candidates", "3"]) == 2  # k > candidates: exit 2
    assert "need 1 <= k <= candidates" in capsys.readouterr().err
