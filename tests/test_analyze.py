"""analyze: explanations of scored pairs, `reelsense explain`, profiles, shifts against planted
ones, and the HTML report opened in a real headless Chromium."""

from __future__ import annotations

import dataclasses
import html
import io
import json
import logging
import re
import shutil
import time
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
import tiny_platform

from flows.analyze import analyze, explain_lines, modality_lines, ranked_by_another
from flows.report import run_dir
from flows.score import score_batch
from ranker import artifacts
from ranker.data import MAX_HISTORY, load_dataset, modality_vectors
from ranker.explain import leave_one_modality_out, summarise
from ranker.scoring import current_queries
from warehouse import db, store
from warehouse.schemas import FAILURES


@pytest.fixture(scope="module")
def analyzed(ranked_home, tmp_path_factory):
    run = score_batch(str(ranked_home.home), model="lstm-attn", k=4, run_id="run-report")
    truth = tiny_platform.write_truth(tmp_path_factory.mktemp("truth") / "truth.json")
    return ranked_home, run, analyze(str(ranked_home.home), run_id="run-report", truth_path=str(truth), max_plot_users=3)


def unscored_item(wh, user: str) -> str:
    """The first item that no run scored for `user` and that `user` has no event with: explain
    computes its explanation now."""
    return db.fetch(
        wh,
        "SELECT item_id FROM items WHERE item_id NOT IN (SELECT item_id FROM scores WHERE user_id = $1) "
        "AND item_id NOT IN (SELECT item_id FROM events WHERE user_id = $1) ORDER BY 1 LIMIT 1",
        [user],
    )[0]["item_id"]


def test_every_scored_pair_is_explained(analyzed):
    wh, run, summary = analyzed
    assert summary["explanations"] == run["written"] == tiny_platform.USERS * 4
    rows = db.fetch(wh, "SELECT * FROM explanations WHERE run_id = 'run-report'")
    assert len(rows) == tiny_platform.USERS * 4
    for r in rows:
        assert len(r["attention"]) == len(r["history_item_ids"]) == 20
        assert abs(sum(r["attention"]) - 1) < 1e-4
        assert r["modality_names"] == ["audio", "frames", "text"]
        assert np.allclose(r["fusion_weights"], 1 / 3, atol=1e-6)
        assert r["feature_names"][-1] == "bias" and len(r["feature_contributions"]) == len(r["feature_names"])
        share = int(re.search(r"; (\d+)% of the attention", r["summary"]).group(1))  # "mostly" for most of it only
        assert r["summary"].startswith("mostly because of the" if share >= 50 else "in part because of the"), r["summary"]
        assert r["model_version"].startswith("lstm-attn@") and "+lightgbm@" in r["model_version"]


def test_shifts_are_scored_against_the_planted_ones(analyzed):
    wh, _, summary = analyzed
    metrics = json.loads((run_dir(wh, "run-report") / "shifts.json").read_text())
    assert {"precision", "recall", "f1", "tolerance"} <= set(metrics)
    assert metrics["planted"] == tiny_platform.SHIFTERS
    assert metrics["f1"] >= 0.8, metrics
    profiles = json.loads((run_dir(wh, "run-report") / "profiles.json").read_text())
    # user00 liked cooking, then sports: both lead their profile, and the words name them.
    assert {t for t, _ in profiles["user00"]["tags"]["hashtag"][:2]} == {"cooking", "sports"}
    assert "#cooking" in profiles["user00"]["words"] and "piano" in profiles["user00"]["words"]


def test_leaving_out_a_modality_that_carries_nothing_costs_nothing(ranked_home):
    data = load_dataset(ranked_home)
    model = artifacts.load(ranked_home.models_dir, "lstm-attn", data, {}, "cpu", match="schema")
    mv = modality_vectors(ranked_home, data)
    mv.vectors["audio"][:] = 0  # audio now adds nothing to any fused vector
    data.content = mv.fused_without("none")  # the model scores with the content it is given
    model.net.items.content.copy_(__import__("torch").as_tensor(data.content))
    before = model.net.items.content.clone()
    queries = current_queries(data)
    names, contributions = leave_one_modality_out(model, data, queries, queries.hist_items[:, -1], mv)
    assert (model.net.items.content == before).all()  # explanations never change the model's buffers
    assert names == ["audio", "frames", "text"]
    assert np.abs(contributions[:, 0]).max() < 1e-5
    assert np.abs(contributions[:, 1:]).max() > 1e-3


def test_summary_in_words_by_hand():
    tags = [{"hashtag": ["travel", "nature"]}, {"hashtag": ["food"]}, {"hashtag": ["vlog", "travel"]}]
    text = summarise(
        attention_weights=np.array([0.4, 0.15, 0.45], np.float32),
        history_tags=tags,
        history_events=[3, 2, 2],
        history_age_s=[200000.0, 100.0, 90000.0],
        modality_names=["audio", "frames", "text"],
        contributions=np.array([0.5, -0.1, 0.2], np.float32),
        target_tags={"music": ["piano", "slow", "soft"], "picture": ["plate"], "hashtag": ["travel"]},
    )
    assert text == (
        "mostly because of the 2 #travel videos you watched or liked (the most recent a day before your last visit; 85% of the attention, on "
        "2 of your 3 recent interactions); the music (piano, slow) added to the score and the picture (plate) took from it "
        "(leaving each out costs +0.50 and -0.10)"
    )
    # The count and the attention share are of the same videos: the #travel ones, not the #food one
    # that also sits among the most attended (probe finding: "the 1 #food video ... 62% on 3 videos").
    text = summarise(
        attention_weights=np.array([0.3, 0.25, 0.05], np.float32),
        history_tags=tags,
        history_events=[3, 2, 2],
        history_age_s=[200000.0, 100.0, 90000.0],
        modality_names=["text"],
        contributions=np.array([0.2], np.float32),
        target_tags={},
    )
    assert text.startswith(
        "in part because of the 1 #travel video you liked (the most recent 2 days before your last visit; 30% of the attention, on 1 of your 3 recent"
    )
    # A video seen twice is one video; the share stays that of both interactions.
    text = summarise(
        attention_weights=np.array([0.35, 0.35, 0.3], np.float32),
        history_tags=[{"hashtag": ["food"]}] * 3,
        history_events=[3, 3, 3],
        history_age_s=[10.0, 10.0, 10.0],
        modality_names=[],
        contributions=np.zeros(0),
        target_tags={},
        history_items=["v1", "v1", "v2"],
    )
    assert text.startswith(
        "mostly because of the 1 #food video you liked (the most recent within a day of your last visit; 70% of the attention, on 2 of your 3 recent"
    )


def test_an_item_without_content_gets_no_modality_sentence_not_nan():
    text = summarise(
        attention_weights=np.array([1.0], np.float32),
        history_tags=[{"hashtag": ["food"]}],
        history_events=[3],
        history_age_s=[10.0],
        modality_names=["audio", "text"],
        contributions=np.array([np.nan, np.nan], np.float32),
        target_tags={},
    )
    assert text.endswith("it has no content vector, so no modality contributed") and "nan" not in text


def test_the_reports_cell_of_an_item_without_content_says_none_not_nan():
    """Probe, 2026-12-03: a user page read "audio +nan, frames +nan, text +nan" for an item popularity served."""
    from flows.report import _contributions

    row = {"modality_names": ["frames", "text"], "modality_contributions": [float("nan"), None]}
    assert _contributions(row) == "none (no content vector)"
    assert _contributions({**row, "modality_contributions": [0.25, float("nan")]}) == "frames +0.25"


def test_explain_says_in_one_line_that_an_item_without_content_has_no_modality_contributions():
    row = {"modality_names": ["audio", "text"], "modality_contributions": [float("nan"), None], "fusion_weights": [0.0, 0.0]}
    assert modality_lines(row) == ["modality contributions: none (the item has no content vector, so there is nothing to leave out)"]
    row = {"modality_names": ["audio", "text"], "modality_contributions": [0.25, float("nan")], "fusion_weights": [0.5, 0.5]}
    assert modality_lines(row)[1:] == ["  audio    +0.250   fusion weight 0.50", "  text          -   fusion weight 0.50"]
    row = {"modality_names": ["audio", "text"], "modality_contributions": [0.25, -0.125], "fusion_weights": [0.0, 1.0]}  # no audio
    assert modality_lines(row)[1:] == [
        "  audio    +0.250   fusion weight 0.00  (the item has none: the history's change alone)",
        "  text     -0.125   fusion weight 1.00",
    ]


def test_an_lstm_attn_checkpoint_from_before_the_rework_is_a_clear_error(ranked_home, tmp_path):
    import torch

    from ranker.sequence import LstmAttn
    from warehouse.errors import ReelsenseError

    (tmp_path / "v1").mkdir()
    torch.save({"heads": ["engage"], "state": {}, "history": []}, tmp_path / "v1" / "model")  # the old format
    with pytest.raises(ReelsenseError, match=r"saved by an older reelsense .*`reelsense train --models lstm-attn`$"):
        LstmAttn().load(tmp_path / "v1" / "model", load_dataset(ranked_home))


def test_explain_prints_a_stored_pair_and_computes_an_unscored_one(analyzed):
    wh, _, _ = analyzed
    pair = db.fetch(wh, "SELECT user_id, item_id FROM scores WHERE run_id = 'run-report' AND rank = 1 LIMIT 1")[0]
    lines = explain_lines(wh, pair["user_id"], pair["item_id"])
    text = "\n".join(lines)
    assert "scored in run run-report" in text and "attention over the history" in text
    assert "modality contributions" in text and "LightGBM feature contributions" in text
    unscored = explain_lines(wh, "user00", "i000")
    assert "computed now" in unscored[0]
    fresh = unscored_item(wh, "user00")  # neither scored for the user nor engaged with: no report will ever store it (probe)
    first = explain_lines(wh, "user00", fresh)[0]
    assert "computed now: no stored explanation of this pair: no run scored it, and reports store" in first and "`reelsense report`" not in first
    assert not any(line.startswith("Note:") for line in lines)  # a scored item is never an engaged one
    # An item the user engaged with is explained as a score, not as a recommendation (probe).
    engaged = db.fetch(wh, "SELECT item_id, count(*) AS n FROM events WHERE user_id = 'user00' AND event <> 'impression' GROUP BY 1 ORDER BY 1 LIMIT 1")[0]
    lines = explain_lines(wh, "user00", engaged["item_id"])
    n = f"{engaged['n']} {'event' if engaged['n'] == 1 else 'events'}"
    note = f"Note: user00 already engaged with {engaged['item_id']} ({n}); score runs made since leave it out, "
    assert lines[2] == note + "so read this as the model's score, not a recommendation."


def test_explain_without_a_run_uses_the_newest_run_that_scored_the_pair(analyzed, tmp_path):
    """Probe, 2026-12-02: with a newer run that scored the pair but had no explanation stored yet,
    explain showed the older run's explanation and did not say that a newer run existed."""
    wh, _, _ = analyzed
    pair = db.fetch(wh, "SELECT user_id, item_id FROM scores WHERE run_id = 'run-report' AND rank = 1 LIMIT 1")[0]
    home = tmp_path / "copy"
    shutil.copytree(wh.home, home)
    score_batch(str(home), model="lstm-attn", k=4, run_id="run-newer")  # the same model: it scores the pair again
    copy = type(wh)(home)
    assert (
        db.fetch(copy, "SELECT count(*) AS n FROM scores WHERE run_id = 'run-newer' AND user_id = $1 AND item_id = $2", [pair["user_id"], pair["item_id"]])[0][
            "n"
        ]
        == 1
    )
    first = explain_lines(copy, pair["user_id"], pair["item_id"])[0]
    assert "computed now: run run-newer, the newest to score this pair, has no stored explanation" in first
    assert "`reelsense report --run-id run-newer` stores them); run run-report's is shown by `--run-id run-report`" in first
    assert "scored in run run-report" in explain_lines(copy, pair["user_id"], pair["item_id"], run_id="run-report")[0]
    from warehouse.errors import ReelsenseError

    with pytest.raises(ReelsenseError, match=r"run 'run-newer' has no explanation .* yet; `reelsense report --run-id run-newer` stores them"):
        explain_lines(copy, pair["user_id"], pair["item_id"], run_id="run-newer")
    # Probe: a pair the run did not score was told to run `report`, which can never store it.
    with pytest.raises(ReelsenseError, match=r"run 'run-report' did not score item 'i000' for user 'user00'.*no run scored it"):
        explain_lines(copy, "user00", "i000", run_id="run-report")


def test_explain_of_a_run_of_another_ranker_says_which_ranked_it(analyzed, tmp_path):
    """Probe: the stored explanation of a popularity run named lstm-attn alone, read as the reasons
    of the ranker that scored it."""
    from flows.rank import train_rankers

    wh, _, _ = analyzed
    home = tmp_path / "copy"
    shutil.copytree(wh.home, home)
    train_rankers(str(home), models=["popularity"])
    score_batch(str(home), model="popularity", k=2, run_id="run-pop", users=["user00"])
    analyze(str(home), run_id="run-pop", max_plot_users=0)
    copy = type(wh)(home)
    pop = artifacts.latest(copy.models_dir, "popularity")["version"]
    item = db.fetch(copy, "SELECT item_id FROM scores WHERE run_id = 'run-pop' AND rank = 1")[0]["item_id"]
    first = explain_lines(copy, "user00", item, run_id="run-pop")[0]
    said = f"(ranked by popularity@{pop}; explained by the model named at the end of this line, which explains the runs of every ranker)"
    assert f"scored in run run-pop {said}" in first and "; model lstm-attn@" in first, first
    # A lightgbm run explained by other versions than its own says so too (probe).
    assert ranked_by_another("lightgbm@old", "lstm-attn@new+lightgbm@new").startswith(" (ranked by lightgbm@old, which cannot explain it now; explained by")
    assert ranked_by_another("lightgbm@new", "lstm-attn@new+lightgbm@new") == "" == ranked_by_another("lstm-attn@new", "lstm-attn@new+lightgbm@new")
    own = db.fetch(wh, "SELECT user_id, item_id FROM scores WHERE run_id = 'run-report' LIMIT 1")[0]
    assert "ranked by" not in explain_lines(wh, own["user_id"], own["item_id"], run_id="run-report")[0]  # a run of lstm-attn: said once, by its model


def test_the_rankers_table_of_other_models_is_flagged_in_a_runs_report(analyzed):
    """Probe, 2026-12-02: `reelsense report --run-id R` showed results.json of older models and data
    as if it were R's."""
    from flows.report_rankers import other_models_note

    wh, _, _ = analyzed
    version = db.fetch(wh, "SELECT any_value(model_version) AS v FROM scores WHERE run_id = 'run-report'")[0]["v"].split("@")[1]
    now = load_dataset(wh, MAX_HISTORY)
    assert other_models_note(wh, {"models": {"lstm-attn": {"version": version}}}, "run-report", now) == ""
    older = {"models": {"lstm-attn": {"version": "20260101T000000-older"}}, "data_fingerprint": "abcdef0123"}
    note = other_models_note(wh, older, "run-report", now)
    assert (
        f"scored by lstm-attn version {version}" in note and "(of the data with fingerprint abcdef01), holds lstm-attn version 20260101T000000-older;" in note
    )
    # The run's model is the latest (probe: the note blamed an older --version): evaluate measures it.
    assert "that evaluation did not measure this version: <code>reelsense evaluate --models lstm-attn</code> measures it." in note
    # ...unless the data changed since it was trained (probe, 2026-12-03: evaluate then refused).
    changed = other_models_note(wh, older, "run-report", dataclasses.replace(now, targets=now.targets[::-1].copy()))
    assert "and <code>reelsense evaluate</code> would refuse it now: lstm-attn " in changed
    assert "was trained on other data" in changed and "retrain it: `reelsense train --models lstm-attn`" in changed
    assert "holds no lstm-attn" in other_models_note(wh, {"models": {"popularity": {"version": "x"}}}, "run-report", now)


def test_the_reports_rescore_advice_keeps_the_runs_users_and_k(analyzed, tmp_path):
    """Probe, 2026-12-03: the report advised `reelsense score --model M --run-id R --replace`, which
    rescored a 3-user, k=5 run over every user with k=20."""
    from flows.rank import train_rankers
    from flows.report_rankers import other_models_note, rescore_advice

    wh, _, _ = analyzed
    now = load_dataset(wh, MAX_HISTORY)
    everyone = len(current_queries(now))
    command = "<code>reelsense score --model lstm-attn --run-id run-report --replace --k 4</code>"
    assert rescore_advice(wh, "lstm-attn", "run-report", now).startswith(command + " rescores")
    home = tmp_path / "copy"
    shutil.copytree(wh.home, home)
    copy = type(wh)(home)
    users = sorted(current_queries(now).users)[:3]
    score_batch(str(home), model="lstm-attn", k=5, run_id="run-three", users=users[::-1])
    three = f"<code>reelsense score --model lstm-attn --run-id run-three --replace --k 5 --users={','.join(users)}</code> rescores it with the latest ("
    assert rescore_advice(copy, "lstm-attn", "run-three", now).startswith(three)
    query = "reelsense sql &quot;SELECT DISTINCT user_id FROM scores WHERE run_id = &#x27;run-three&#x27; ORDER BY user_id&quot; --format csv"
    many = rescore_advice(copy, "lstm-attn", "run-three", now, listed=2)
    assert many.startswith("<code>reelsense score --model lstm-attn --run-id run-three --replace --k 5</code> rescores it with the latest; ")
    lists = f"(<code>{query}</code> lists them: run it before <code>--replace</code> deletes the run's rows)"
    assert f"the run scored 3 of {everyone} users: without <code>--users</code> naming them {lists} it scores every user" in many
    # An id --users cannot pass (a comma): the advice says so instead of listing or querying (review).
    import pyarrow as pa

    from warehouse import store
    from warehouse.schemas import SCORES

    odd = db.fetch(copy, "SELECT * FROM scores WHERE run_id = 'run-three' ORDER BY user_id, rank")
    # review: ",c" made split_users raise "--users ',c' has an empty name"; it sorts first, so all() reaches it
    odd_ids = {users[0]: "a,b", users[1]: ",c"}
    rows = [{**r, "run_id": "run-odd", "user_id": odd_ids.get(r["user_id"], r["user_id"])} for r in odd]
    store.append(copy, SCORES, pa.Table.from_pylist(rows, schema=SCORES.schema))
    cannot = rescore_advice(copy, "lstm-attn", "run-odd", now)
    assert cannot.startswith("<code>reelsense score --model lstm-attn --run-id run-odd --replace --k 5</code> rescores it with the latest; ")
    assert f"the run scored 3 of {everyone} users, and some of their ids hold a comma or spaces at their ends" in cannot
    # The --k a run keeps, not its largest rank, which is less where users have fewer items to rank (probe)
    items = db.fetch(copy, "SELECT count(*) AS n FROM items")[0]["n"]
    score_batch(str(home), model="lstm-attn", k=items + 5, run_id="run-big", users=users[:1])
    big = f"<code>reelsense score --model lstm-attn --run-id run-big --replace --k {items + 5} --users={users[0]}</code> rescores"
    assert rescore_advice(copy, "lstm-attn", "run-big", now).startswith(big)
    score_batch(str(home), model="lstm-attn", run_id="run-default")  # every user, the default k: nothing to add
    command = "<code>reelsense score --model lstm-attn --run-id run-default --replace</code>"
    assert rescore_advice(copy, "lstm-attn", "run-default", now).startswith(command + " rescores")
    # The report's note gives it where a newer model than the run's is the latest.
    train_rankers(str(home), models=["lstm-attn"], device="cpu", force=True, settings={"lstm-attn": {"max_epochs": 1}})
    assert three in other_models_note(copy, {"models": {"lstm-attn": {"version": "20260101T000000-older"}}}, "run-three", now)


def test_the_item_map_follows_a_user_the_run_scored(analyzed, tmp_path):
    """Probe, 2026-12-03: the item map followed the user with the most shifts of all users, who
    need not be in the run."""
    import re

    wh, _, _ = analyzed
    caption = re.compile(r"with the interactions of (\S+) in time order")
    featured = caption.search((run_dir(wh, "run-report") / "index.html").read_text()).group(1)
    other = next(u for u in sorted(current_queries(load_dataset(wh, MAX_HISTORY)).users) if u != featured)
    home = tmp_path / "copy"
    shutil.copytree(wh.home, home)
    copy = type(wh)(home)
    score_batch(str(home), model="lstm-attn", k=4, run_id="run-one", users=[other])
    analyze(str(home), run_id="run-one", max_plot_users=1)
    assert caption.search((run_dir(copy, "run-one") / "index.html").read_text()).group(1) == other


def test_report_renders_in_headless_chromium(analyzed):
    wh, _, summary = analyzed
    index = run_dir(wh, "run-report") / "index.html"
    assert summary["report"] == str(index)
    pngs = sorted(p.name for p in (index.parent / "plots").glob("*.png"))
    assert {"embedding_map.png", "attention.png", "modality_contributions.png"} <= set(pngs)
    assert summary["pages"] == tiny_platform.USERS
    driver = _chromium()
    try:
        driver.get(index.as_uri())
        assert driver.title == "reelsense report"
        images = driver.find_elements("tag name", "img")
        assert len(images) == 3
        for img in images:  # naturalWidth is 0 for an image the browser could not load or decode
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 100
        driver.find_element("link text", "user00").click()
        assert driver.title == "user user00"
        figure = driver.find_element("tag name", "img")
        assert driver.execute_script("return arguments[0].naturalWidth", figure) > 100
        assert "Top-scored items and why" in driver.page_source
    finally:
        driver.quit()


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("headless Chromium is missing: `make system` installs the Debian packages chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--allow-file-access-from-files"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_report_command_line(analyzed, capsys):
    from flows.cli import main

    wh, _, _ = analyzed
    assert main(["--home", str(wh.home), "report", "--run-id", "run-report", "--plot-users", "1"]) == 0
    out = capsys.readouterr().out
    assert "analyze run-report: 144 explanations, 36 user pages" in out and "index.html" in out
    assert main(["--home", str(wh.home), "explain", "--user", "nobody", "--item", "i000"]) == 2
    assert "unknown user 'nobody'" in capsys.readouterr().err


def test_characters_missing_from_the_plot_font_are_gathered_once_and_other_warnings_still_shown():
    """Probe: one item tagged #旅行 printed 164 matplotlib warnings during `report`."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flows.report import missing_glyphs

    with pytest.warns(UserWarning, match="^another warning$") as shown:
        with missing_glyphs() as missing:
            for _ in range(3):
                fig, ax = plt.subplots()
                ax.set_title("#旅行 trip")
                fig.savefig(io.BytesIO(), format="png")
                plt.close(fig)
            warnings.warn("another warning", UserWarning, stacklevel=1)
    assert missing == ["旅", "行"]
    assert [str(w.message) for w in shown] == ["another warning"]


def test_the_item_map_samples_a_large_catalogue_but_keeps_the_drawn_users_items():
    from ranker.plots import map_rows

    candidates = np.arange(1, 101)  # row 0 is padding, never a candidate
    np.testing.assert_array_equal(map_rows(candidates, [5], limit=100), candidates)
    rows = map_rows(candidates, [3, 97, 0, 500], limit=10)
    assert len(rows) <= 12 and {3, 97} <= set(rows.tolist()) and set(rows.tolist()) <= set(candidates.tolist())
    assert np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, map_rows(candidates, [3, 97], limit=10))  # seeded
    assert not np.array_equal(map_rows(candidates, [], limit=10), map_rows(candidates, [], limit=10, seed=1))


def test_the_item_map_draws_items_with_content_only_and_paths_keep_their_order():
    from ranker.plots import item_map

    rng = np.random.default_rng(0)
    ids = ["<pad>", *[f"i{k}" for k in range(1, 12)]]
    content = rng.standard_normal((12, 8)).astype(np.float32)
    content[0] = content[4] = 0  # the padding row and an item without a vector
    drawn = item_map(ids, content, ["i7"], groups_of=lambda item: "odd" if int(item[1:]) % 2 else "even")
    assert sorted(drawn.row_of) == sorted(set(ids) - {"<pad>", "i4"}) and drawn.coords.shape == (10, 2)
    assert drawn.groups[drawn.row_of["i3"]] == "odd" and drawn.groups[drawn.row_of["i2"]] == "even"
    path = drawn.path(["i9", "i4", "nobody", "i1"])  # off-map items are left out, the order kept
    np.testing.assert_array_equal(path, drawn.coords[[drawn.row_of["i9"], drawn.row_of["i1"]]])
    assert item_map(ids[:4], content[:4], [], groups_of=str).coords.shape == (0, 2)  # three items: no map


def test_the_item_map_colours_the_most_common_groups_and_draws_the_rest_as_other():
    """Thousands of distinct top tags (MicroLens) become 19 colours and a grey "other": one scatter
    call per colour, not per tag, and every item still drawn."""
    import matplotlib.pyplot as plt

    from ranker.plots import MAP_GROUPS, OTHER, _draw_map, map_groups

    groups = [f"tag{k}" for k in range(3000)] + ["common"] * 50 + ["usual"] * 20
    shown = map_groups(groups)
    assert len(shown) == len(groups) and shown[-1] == "usual" and shown[-60] == "common"
    assert len(set(shown)) == MAP_GROUPS + 1 and OTHER in shown
    assert map_groups(["a", "b", "a"]) == ["a", "b", "a"]  # few groups: left as they are
    fig, ax = plt.subplots()
    _draw_map(ax, np.random.default_rng(0).standard_normal((len(groups), 2)), groups, None, "")
    assert len(ax.collections) == MAP_GROUPS + 1 and sum(len(c.get_offsets()) for c in ax.collections) == len(groups)
    plt.close(fig)


def test_explain_refuses_an_item_without_content_before_explaining_it(analyzed, tmp_path, capsys):
    """Probe: explain gave a "why" of lstm-attn's attention for an item it scores -inf (no content
    vector), and said only at the end that the item had none."""
    from flows.cli import main

    wh, _, _ = analyzed
    home = tmp_path / "copy"
    shutil.copytree(wh.home, home)
    items = tmp_path / "new.csv"
    items.write_text("item_id,title,video_uri\nzz-new,a video not extracted yet,\n")
    assert main(["--home", str(home), "ingest", "items", str(items)]) == 0
    capsys.readouterr()
    assert main(["--home", str(home), "explain", "--user", "user00", "--item", "zz-new"]) == 2
    captured = capsys.readouterr()
    said = "reelsense: error: cannot explain item 'zz-new' for user 'user00': it has no content vector, so lstm-attn (which explains, and ranks "
    assert captured.err.startswith(said) and f"`reelsense --home {home} extract`, then `reelsense --home {home} align` give it one\n" in captured.err
    assert "Why:" not in captured.out and "warning" not in captured.err  # nothing explained, no model loaded
    # Probe: an item with no title and no media was sent to extract and align, which give it nothing.
    items.write_text("item_id,title,video_uri\nzz-bare,,\n")
    assert main(["--home", str(home), "ingest", "items", str(items)]) == 0
    capsys.readouterr()
    assert main(["--home", str(home), "explain", "--user", "user00", "--item", "zz-bare"]) == 2
    err = capsys.readouterr().err
    assert "its row in `items` has no title, video or audio, so there is nothing to embed: ingest its row again with a title" in err, err
    assert err.rstrip().endswith(f"then run `reelsense --home {home} extract` and `reelsense --home {home} align`"), err
    # Probe 48: an item extract quarantined got the generic advice first, and the quarantine as an aside.
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    items.write_text(f"item_id,title,video_uri\nzz-broken,,{tmp_path / 'broken.mp4'}\n")
    assert main(["--home", str(home), "ingest", "items", str(items)]) == 0
    capsys.readouterr()
    copy = type(wh)(home)
    (content_hash,) = [r["content_hash"] for r in db.fetch(copy, "SELECT content_hash FROM items WHERE item_id = 'zz-broken'")]
    failure = {
        "stage": "extract-items",
        "source": "run-x",
        "item_id": "zz-broken",
        "user_id": None,
        "error": "av: invalid data",
        "record": json.dumps({"content_hash": content_hash}),
        "failed_at": datetime.now(timezone.utc),
    }  # as extract writes it
    store.append(copy, FAILURES, pa.Table.from_pylist([failure], schema=FAILURES.schema))
    assert main(["--home", str(home), "explain", "--user", "user00", "--item", "zz-broken"]) == 2
    err = capsys.readouterr().err
    assert "cannot score it: extract could not decode its media (av: invalid data) and skips it until they are fixed and its row is" in err, err
    # An encoder's refusal is tried again on each run (review: it was called skipped, with media to fix)
    failure = {**failure, "stage": "extract-items:frames:encoder", "error": "CUDA out of memory", "failed_at": datetime.now(timezone.utc)}
    store.append(copy, FAILURES, pa.Table.from_pylist([failure], schema=FAILURES.schema))
    assert main(["--home", str(home), "explain", "--user", "user00", "--item", "zz-broken"]) == 2
    err = capsys.readouterr().err
    assert "extract --force` tries it again as it is); the frames encoder refused its input (CUDA out of memory); `reelsense" in err, err
    assert "extract` tries it again on each run" in err, err
    fresh = unscored_item(wh, "user00")  # a pair with no stored explanation: computed now, through the check
    lines = explain_lines(type(wh)(home), "user00", fresh)
    assert "computed now" in lines[0] and any(line.startswith("Why: ") for line in lines)  # an item with content is explained


def test_the_why_says_mostly_only_for_at_least_half_of_the_attention():
    def why(weights: list[float]) -> str:
        return summarise(
            attention_weights=np.array(weights, np.float32),
            history_tags=[{"hashtag": [tag]} for tag in ("food", "travel", "dog")],
            history_events=[3, 3, 3],
            history_age_s=[10.0, 10.0, 10.0],
            modality_names=[],
            contributions=np.zeros(0, np.float32),
            target_tags={},
        )

    assert why([0.5, 0.3, 0.2]).startswith("mostly because of the 1 #food video you liked (the most recent within a day of your last visit; 50% ")
    assert why([0.49, 0.3, 0.21]).startswith("in part because of the 1 #food video you liked (the most recent within a day of your last visit; 49% ")


def test_explain_names_a_user_with_events_but_no_positive_interaction_as_such(analyzed, tmp_path, monkeypatch, capsys):
    """Probe: such a user was called "unknown", where score says why it leaves them out."""
    from flows.cli import main
    from warehouse.errors import ReelsenseError

    wh, _, _ = analyzed
    home = tmp_path / "copy"
    shutil.copytree(wh.home, home)
    events = tmp_path / "idle.csv"
    events.write_text("user_id,item_id,event_ts,event,watch_ratio\nnewcomer,i000,2026-06-01T00:00:00Z,impression,\n")
    assert main(["--home", str(home), "ingest", "events", str(events)]) == 0
    with pytest.raises(ReelsenseError, match=r"^cannot explain: user 'newcomer' has events but no positive interaction yet \(a like"):
        explain_lines(type(wh)(home), "newcomer", "i001")
    # `samples` is current now: refused before the explain flow's module loads (probe: after 5.5 s)
    import flows.analyze

    monkeypatch.setattr(flows.analyze, "explain_lines", lambda *a, **k: pytest.fail("explain went on for a user with no history"))
    assert main(["--home", str(home), "explain", "--user", "newcomer", "--item", "i001"]) == 2
    assert "cannot explain: user 'newcomer' has events but no positive interaction yet" in capsys.readouterr().err
    with pytest.raises(ReelsenseError, match=r"^cannot explain: unknown user 'nobody'"):
        explain_lines(type(wh)(home), "nobody", "i001")


def test_a_report_after_new_events_stores_the_explanations_its_page_shows(analyzed, tmp_path, caplog, capsys):
    """Probe: a second `report` of a run after new events wrote the page from the new histories but
    kept the stored explanations (`explain`, the table) from the old ones."""
    from flows.arguments import ranking_inputs
    from flows.cli import main
    from warehouse import store
    from warehouse.schemas import SCORES

    wh, _, _ = analyzed
    home = tmp_path / "copy"
    shutil.copytree(wh.home, home)
    copy = type(wh)(home)
    db.refresh_views(copy)
    assert store.partition_record(copy, SCORES, "run-report")["ranked_from"] == ranking_inputs(copy)  # the fixture's: no warning then
    index = run_dir(copy, "run-report") / "index.html"
    assert json.loads((index.parent / "report.json").read_text())["ranked_from_current_data"] is True
    assert "ranked from other data" not in index.read_text()
    before = db.fetch(copy, "SELECT item_id, history_item_ids FROM explanations WHERE run_id = 'run-report' AND user_id = 'user00'")
    # A new item with no events changes no history: the warning says what changed (probe: it said the
    # histories had), and the summary line says it too
    new_item = tmp_path / "new-item.csv"
    new_item.write_text("item_id,title,video_uri\nzz-new,a video not extracted yet,\n")
    assert main(["--home", str(home), "ingest", "items", str(new_item)]) == 0
    capsys.readouterr()
    assert main(["--home", str(home), "report", "--run-id", "run-report", "--pages", "1", "--plot-users", "0"]) == 0
    out = capsys.readouterr().out
    said = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    items_changed = (
        "run run-report was ranked from other data than the warehouse holds now: the items (`items`, or items only `events` name) "
        "or their content vectors changed since, not the histories"
    )
    assert items_changed in said, said
    assert "; ranked from other data than the warehouse holds now (items or content vectors changed since: see the warning);" in out, out
    assert "current histories" not in said and "current histories" not in index.read_text()
    assert "scores it again from the current data" in said and "train --models lstm-attn`, then" not in said  # lstm-attn fits the new item
    # A run of a model that no longer fits (lightgbm's item count grew): the advice trains it first (probe: it failed as printed)
    from flows.analyze import stale_warning

    # a rescore with another version than the run's says so (probe 48: it switched version unsaid)
    latest = artifacts.latest(copy.models_dir, "lstm-attn")["version"]
    said = stale_warning(copy, "run-report", name="lstm-attn", changed="items", data=load_dataset(copy, MAX_HISTORY), version="20200101T000000-gone")
    assert f"scores it again from the current data with the latest lstm-attn, {latest} (the run was scored by 20200101T000000-gone)" in said
    assert "--version" not in said  # that version is gone: nothing to keep
    said = stale_warning(copy, "run-report", name="lightgbm", changed="items", data=load_dataset(copy, MAX_HISTORY))
    assert "; no lightgbm fits the current data (lightgbm " in said and "`reelsense train --models lightgbm`, then `reelsense score --model lightgbm" in said, (
        said
    )
    caplog.clear()
    liked = unscored_item(copy, "user00")
    events = tmp_path / "liked.csv"
    events.write_text(f"user_id,item_id,event_ts,event,watch_ratio\nuser00,{liked},2026-06-01T00:00:00Z,like,\n")
    assert main(["--home", str(home), "ingest", "events", str(events)]) == 0
    other = "run run-report was ranked from other data than the warehouse holds now"
    assert store.partition_record(copy, SCORES, "run-report")["ranked_from"] != ranking_inputs(copy)  # the ingest changed it
    analyze(str(home), run_id="run-report", max_plot_users=1)
    warned = [r for r in caplog.records if other in r.getMessage() and r.levelno == logging.WARNING]
    events_changed = (
        "the histories or engaged items it ranked from (`samples`, built from `events`) changed since, so its report explains each pair "
        "from the current histories, which can differ from those it was ranked from"
    )
    assert len(warned) == 1 and events_changed in warned[0].getMessage()
    k = db.fetch(copy, "SELECT max(rank) AS k FROM scores WHERE run_id = 'run-report'")[0]["k"]  # the run's --k (probe: left out)
    assert f"`reelsense --home {home} score --model lstm-attn --run-id run-report --replace --k {k}` scores it again" in warned[0].getMessage()
    # said to whoever opens the report later, not only in the log of the run that wrote it (review)
    assert f"<p class=warn>{html.escape(other)}" in index.read_text() and html.escape(f"reelsense --home {home} score") in index.read_text()
    assert json.loads((index.parent / "report.json").read_text())["ranked_from_current_data"] is False
    after = db.fetch(copy, "SELECT item_id, history_item_ids, summary FROM explanations WHERE run_id = 'run-report' AND user_id = 'user00'")
    assert sorted(r["item_id"] for r in after) == sorted(r["item_id"] for r in before)  # one row a pair, none added
    assert all(r["history_item_ids"][-1] == liked for r in after) and not any(r["history_item_ids"][-1] == liked for r in before)
    page = (run_dir(copy, "run-report") / "users" / "user00.html").read_text()
    assert all(html.escape(r["summary"]) in page for r in after)
    assert db.fetch(copy, "SELECT count(*) AS n FROM explanations WHERE run_id = 'run-report'")[0]["n"] == tiny_platform.USERS * 4
    # A failure explaining the run does not hide that its data changed (review: it was said after that step)
    import flows.analyze
    from warehouse.errors import ReelsenseError

    def fails(*args, **kwargs):
        raise ReelsenseError("no explainer")

    caplog.clear()
    with pytest.MonkeyPatch.context() as patch, pytest.raises(ReelsenseError, match="no explainer"):
        patch.setattr(flows.analyze, "explain_scores", fails)
        analyze(str(home), run_id="run-report", max_plot_users=0)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"run run-report was ranked from other data than the warehouse holds now (the histories or engaged items changed since); "
        f"`reelsense --home {home} score --model lstm-attn --run-id run-report --replace` (with the --k and --users it was scored with) "
        "scores it again from the current data"
    ]
    # A run scored before runs kept their data's digest: not known, and the page says so (probe: silent)
    (copy.table_dir(SCORES) / "run_id=run-report" / ".made_from.json").unlink()
    summary = analyze(str(home), run_id="run-report", max_plot_users=0, max_pages=1)
    assert summary["data_changed"] == "unknown" and json.loads((index.parent / "report.json").read_text())["ranked_from_current_data"] is None
    assert "<p class=muted>This run was scored before runs kept a record of the data they ranked from" in index.read_text()
    assert "ranked from other data" not in index.read_text()


def test_explain_pairs_the_latest_lstm_attn_only_with_a_lightgbm_trained_over_it(analyzed, tmp_path, capsys):
    """Probe: after lstm-attn alone was retrained, explain showed the new lstm-attn's attention with
    the feature contributions of a lightgbm trained over the old one."""
    from flows.cli import main

    wh, _, _ = analyzed
    home = tmp_path / "copy"
    shutil.copytree(wh.home, home)
    copy = type(wh)(home)
    assert main(["--home", str(home), "train", "--models", "lstm-attn", "--force"]) == 0
    newest = artifacts.latest(copy.models_dir, "lstm-attn")["version"]
    assert artifacts.latest(copy.models_dir, "lightgbm")["base_version"] != newest
    fresh = unscored_item(copy, "user00")
    capsys.readouterr()
    lines = explain_lines(copy, "user00", fresh)
    assert lines[0].endswith(f"model lstm-attn@{newest}") and not any("LightGBM feature contributions" in line for line in lines)
    assert f"no lightgbm was trained over lstm-attn {newest}, the latest (`reelsense train --models lightgbm` trains one" in capsys.readouterr().err
    assert main(["--home", str(home), "train", "--models", "lightgbm"]) == 0
    lines = explain_lines(copy, "user00", fresh)
    lightgbm = artifacts.latest(copy.models_dir, "lightgbm")["version"]
    assert lines[0].endswith(f"model lstm-attn@{newest}+lightgbm@{lightgbm}") and any("LightGBM feature contributions" in line for line in lines)


def test_the_why_compares_only_the_modalities_the_item_has():
    """Probe: an item without a video read "the picture mattered more than the title": leaving the
    frames out had changed the history's pictures, not the item's."""

    def why(has: list[bool]) -> str:
        return summarise(
            attention_weights=np.array([1.0], np.float32),
            history_tags=[{"hashtag": ["food"]}],
            history_events=[3],
            history_age_s=[10.0],
            modality_names=["audio", "frames", "text"],
            contributions=np.array([0.1, 0.37, -1.16], np.float32),
            target_tags={"hashtag": ["travel"]},
            target_has=np.array(has),
        )

    assert why([True, True, True]).endswith("the picture added to the score and the title (travel) took from it (leaving each out costs +0.37 and -1.16)")
    assert why([False, False, True]).endswith("; it has no music or picture; its text content took 1.16 from the score")
    music = "the music added to the score and the title (travel) took from it (leaving each out costs +0.10 and -1.16)"
    assert why([True, False, True]).endswith(f"; it has no picture; {music}")


def test_the_why_says_mattered_more_only_where_both_modalities_added_to_the_score():
    """Probe: "the title mattered more than the music (leaving it out costs +0.22 vs -0.22)": the
    music lowered the score. The sentence follows the signs of the two costs."""

    def why(costs: list[float]) -> str:
        return summarise(
            attention_weights=np.array([1.0], np.float32),
            history_tags=[{"hashtag": ["food"]}],
            history_events=[3],
            history_age_s=[10.0],
            modality_names=["audio", "text"],
            contributions=np.array(costs, np.float32),
            target_tags={"hashtag": ["travel"], "music": ["piano"]},
        )

    assert why([0.3, -0.001]).endswith("the title (travel) (leaving it out costs +0.30 vs +0.00 of the score)")  # signs as shown
    assert why([0.3, 0.1]).endswith("; the music (piano) mattered more than the title (travel) (leaving it out costs +0.30 vs +0.10 of the score)")
    assert why([0.3, -0.1]).endswith("; the music (piano) added to the score and the title (travel) took from it (leaving each out costs +0.30 and -0.10)")
    assert why([-0.3, -0.1]).endswith(
        "; no modality added to the score: the title (travel) took least from it, the music (piano) most (leaving each out costs -0.10 and -0.30)"
    )


def test_report_of_an_earlier_run_goes_on_while_an_item_without_interactions_waits_for_align(analyzed, tmp_path, capsys, monkeypatch):
    """Probe: a newly extracted item, not yet aligned and with no interactions, stopped `report` of a
    run scored before it arrived (it plays no part in the explanations). An unaligned item that a
    history holds still stops it: its content would be zeros."""
    from flows.cli import main

    wh, _, _ = analyzed
    home = tmp_path / "copy"
    shutil.copytree(wh.home, home)
    copy = type(wh)(home)
    (tmp_path / "new.csv").write_text("item_id,title,video_uri\ni0new,brand new cooking clip #cooking,\n")
    assert main(["--home", str(home), "ingest", "items", str(tmp_path / "new.csv")]) == 0
    tiny_platform.add_item_vectors(copy, "i0new", aligned=False)  # extracted, align not rerun
    written = json.loads((run_dir(copy, "run-report") / "report.json").read_text())["written_at"]
    time.sleep(1.1)  # written_at is to the second
    said: list[str] = []  # a log line inside the flow: its words are taken where they are said
    monkeypatch.setattr("flows.explainers.say", lambda message, *args, **kwargs: said.append(message))
    assert main(["--home", str(home), "report", "--run-id", "run-report", "--plot-users", "0", "--pages", "2"]) == 0
    assert json.loads((run_dir(copy, "run-report") / "report.json").read_text())["written_at"] > written  # written again
    (lightgbm,) = [m for m in said if m.startswith("explanations without LightGBM's feature contributions")]
    assert "only raw embeddings: run `reelsense" in lightgbm and "ingest items" not in lightgbm, lightgbm  # probe: it named ingest and extract too
    capsys.readouterr()
    # The explanations' copy of the data sets the unread item aside, yet LightGBM's advice is still
    # `align` alone (probe: it named ingest and extract too).
    from flows.explainers import unaligned_in_use

    seen = unaligned_in_use(load_dataset(copy, MAX_HISTORY), [])
    assert seen.unaligned == [] and seen.unaligned_unread == ["i0new"]
    advice = r"1 has no fused:aligned@tiny vector yet \(i0new\), only raw embeddings: run `"
    with pytest.raises(artifacts.ModelMismatch, match=advice):  # the schema's check (a new item leaves the rows' fingerprint as it was)
        artifacts.check_with_base(copy.models_dir, "lightgbm", seen, match="schema")
    meta_path = copy.models_dir / "rankers" / "lstm-attn" / artifacts.latest(copy.models_dir, "lstm-attn")["version"] / "meta.json"
    kept_meta = meta_path.read_text()
    meta_path.write_text(json.dumps({**json.loads(kept_meta), "data_fingerprint": "other rows"}))  # the fingerprint's check (review)
    with pytest.raises(artifacts.ModelMismatch, match=r"was trained on other data \(fingerprint other rows, .*" + advice):
        artifacts.checked_meta(copy.models_dir, "lstm-attn", seen)
    meta_path.write_text(kept_meta)
    assert main(["--home", str(home), "explain", "--user", "user00", "--item", "i0new"]) == 2  # probe: it said ingest and extract
    assert "it has raw embeddings but no fused:aligned@tiny vector yet, so lstm-attn" in capsys.readouterr().err
    events = tmp_path / "liked.csv"
    events.write_text("user_id,item_id,event_ts,event,watch_ratio\nuser00,i0new,2026-06-01T00:00:00Z,like,\n")
    assert main(["--home", str(home), "ingest", "events", str(events)]) == 0
    assert main(["--home", str(home), "report", "--run-id", "run-report", "--plot-users", "0", "--pages", "2"]) == 2
    assert "1 item has raw embeddings but no fused:aligned@tiny vector (i0new); run `reelsense" in capsys.readouterr().err
