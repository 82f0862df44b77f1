"""A fit stopped part way continues from its last finished epoch (ranker/training.py FitCheckpoint)
and ends with the model one uninterrupted fit gives; a checkpoint of another fit is not continued;
a finished one is not trained again."""

from __future__ import annotations

import io
import json
import shutil
import sys
from dataclasses import replace
from datetime import timedelta

import pytest
import torch
from conftest import write_csv
from test_content_rankers import FAST, FAST_LSTM, planted
from test_rankers import dataset

from ranker.bprmf import BprMF, BprMfConfig
from ranker.sasrec import Sasrec
from ranker.sequence import LstmAttn
from ranker.training import FitCheckpoint, discard, epoch_bar
from warehouse import store
from warehouse.errors import ReelsenseError

EPOCHS = 4
MODELS = {
    "sasrec-content": lambda: Sasrec(use_content=True, config=replace(FAST, max_epochs=EPOCHS)),
    "sasrec": lambda: Sasrec(use_content=False, config=replace(FAST, max_epochs=EPOCHS)),
    "lstm-attn": lambda: LstmAttn(use_content=True, config=replace(FAST_LSTM, max_epochs=EPOCHS)),
    "lstm-attn-sampled": lambda: LstmAttn(use_content=True, config=replace(FAST_LSTM, max_epochs=EPOCHS, full_softmax_max=0, negatives=8)),
    # The planted data's validation curve peaks at epoch 3 of 4 with a5 and b5 as negatives (the
    # default leaves them out, and its curve rises to the end): the case where early stopping's state matters.
    "lstm-attn-negatives": lambda: LstmAttn(use_content=True, config=replace(FAST_LSTM, max_epochs=EPOCHS, unseen_negatives=True)),
    "bpr-mf": lambda: BprMF(BprMfConfig(max_epochs=EPOCHS, patience=EPOCHS, batch=64)),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Equal weights need one thread: two uninterrupted fits of lstm-attn on 2 threads differ in
    the 7th digit (the order of parallel sums), with or without a checkpoint."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return dataset(planted(tmp_path_factory.mktemp("planted")), max_history=10)


def weights(model) -> dict[str, torch.Tensor]:
    if isinstance(model, BprMF):
        return {f"{part}.{k}": v for part in ("users", "items", "bias") for k, v in getattr(model, part).state_dict().items()}
    return model.net.state_dict()


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in history]


def stopped_after(epochs: int, make, data, path, monkeypatch) -> None:
    """A fit that is stopped (as by Ctrl-C) right after its checkpoint of epoch `epochs` is written."""
    real_save, saved = FitCheckpoint.save, []

    def save_then_stop(self, stopped):
        real_save(self, stopped)
        saved.append(stopped)
        if len(saved) == epochs:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(FitCheckpoint, "save", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            make().fit(data, seed=3, checkpoint=path)


@pytest.mark.parametrize(("name", "stop"), [*((name, 2) for name in MODELS if name != "lstm-attn-negatives"), ("lstm-attn-negatives", 3)])
def test_a_stopped_fit_continues_from_its_last_epoch_to_the_model_one_fit_gives(name, stop, data, tmp_path, monkeypatch, capsys):
    make = MODELS[name]
    whole = make()
    whole.fit(data, seed=3)
    if stop == 3:  # early stopping's state matters: the best epoch is the stopped one, a later one scores lower
        scores = [h["valid_ndcg@10"] for h in whole.history]
        assert max(range(EPOCHS), key=scores.__getitem__) == stop - 1 and scores[stop] < scores[stop - 1], scores
    path = tmp_path / "fit.pt"
    stopped_after(stop, make, data, path, monkeypatch)
    assert path.exists() and not list(tmp_path.glob(".fit.pt.*"))  # whole files only, no temporary one left
    capsys.readouterr()
    continued = make()  # a new process: nothing but the file carries over
    continued.fit(data, seed=3, checkpoint=path)
    assert f"continuing a stopped fit after epoch {stop}" in capsys.readouterr().err
    assert continued.fit_continued_after == stop and whole.fit_continued_after == 0
    assert len(continued.history) == len(whole.history) == EPOCHS
    assert without_seconds(continued.history) == without_seconds(whole.history)
    mine, theirs = weights(continued), weights(whole)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine), [k for k in mine if not torch.equal(mine[k], theirs[k])]


def test_a_finished_fit_is_not_trained_again_and_another_fits_file_is_not_continued(data, tmp_path, capsys):
    make, path = MODELS["sasrec"], tmp_path / "fit.pt"
    first = make()
    first.fit(data, seed=3, checkpoint=path)
    assert torch.load(path, weights_only=False)["finished"]
    capsys.readouterr()
    again = make()
    again.fit(data, seed=3, checkpoint=path)
    err = capsys.readouterr().err
    assert "had finished after 4 epochs; not training again" in err and "epoch 1:" not in err
    assert again.history == first.history  # the seconds too: these are the first fit's epochs
    assert all(torch.equal(a, b) for a, b in zip(weights(again).values(), weights(first).values(), strict=True))

    other = make()  # another seed: the file is of another fit
    other.fit(data, seed=4, checkpoint=path)
    err = capsys.readouterr().err
    assert f"{path} holds a stopped fit (4 epochs finished) of seed 3 (now 4); training from epoch 1, which replaces it" in err
    fresh = make()
    fresh.fit(data, seed=4)
    assert without_seconds(other.history) == without_seconds(fresh.history)
    assert FitCheckpoint.for_fit(path, make(), data, 4).key == torch.load(path, weights_only=False)["key"]  # replaced by this fit's


def test_a_damaged_state_of_this_fit_is_an_error_that_names_the_file(data, tmp_path, monkeypatch):
    make, path = MODELS["sasrec"], tmp_path / "fit.pt"
    stopped_after(1, make, data, path, monkeypatch)
    state = torch.load(path, weights_only=False)
    del state["optimiser"]
    torch.save(state, path)
    with pytest.raises(ReelsenseError, match=f"{path} is a stopped fit of this data that could not be loaded .*delete it to train from epoch 1"):
        make().fit(data, seed=3, checkpoint=path)


def test_a_state_that_cannot_be_written_is_said_once_and_the_fit_goes_on(data, tmp_path, monkeypatch, capsys):
    def full_disk(path, payload):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_atomic", full_disk)
    model = MODELS["sasrec"]()
    model.fit(data, seed=3, checkpoint=tmp_path / "fit.pt")
    err = capsys.readouterr().err
    assert err.count("cannot keep the fit's state in") == 1 and "training on without it" in err
    assert len(model.history) == EPOCHS and not list(tmp_path.iterdir())


def test_a_stopped_fit_of_other_settings_is_named_by_what_differs(data, tmp_path, monkeypatch, capsys):
    path = tmp_path / "fit.pt"
    stopped_after(2, MODELS["sasrec"], data, path, monkeypatch)
    capsys.readouterr()
    Sasrec(use_content=False, config=replace(FAST, max_epochs=EPOCHS, lr=1e-3)).fit(data, seed=3, checkpoint=path)
    assert "holds a stopped fit (2 epochs finished) of settings lr 0.003 (now 0.001); training from epoch 1" in capsys.readouterr().err


def test_a_folder_where_the_state_goes_is_said_and_the_fit_goes_on(data, tmp_path, capsys):
    path = tmp_path / "fit.pt"
    (path / "x").mkdir(parents=True)  # probe: the fit crashed removing it after saying it trains on
    model = MODELS["sasrec"]()
    model.fit(data, seed=3, checkpoint=path)
    err = capsys.readouterr().err
    assert err.count("cannot keep the fit's state in") == 1 and len(model.history) == EPOCHS
    assert (path / "x").is_dir() and not list(tmp_path.glob(".fit.pt.*"))  # left alone, no temporary file left


def test_an_unreadable_checkpoint_is_said_and_the_fit_starts_over(data, tmp_path, capsys):
    path = tmp_path / "fit.pt"
    path.write_bytes(b"cut short by a crash")
    model = MODELS["bpr-mf"]()
    model.fit(data, seed=3, checkpoint=path)
    assert "cannot continue from" in capsys.readouterr().err
    assert len(model.history) == EPOCHS
    discard(path)
    assert not path.exists()


def test_train_continues_a_stopped_fit_from_the_registry_and_removes_its_state_once_saved(tmp_path, prefect_harness, monkeypatch, capsys):
    """`reelsense train` stopped part way: the next `train` continues the fit (same model as one
    uninterrupted fit) and deletes `<name>/unfinished.pt` once the model is saved."""
    import tiny_platform

    from flows.cli import main as cli
    from flows.rank import build_features, train_rankers
    from ranker import artifacts
    from ranker.data import MAX_HISTORY, load_dataset
    from ranker.registry import build

    wh = tiny_platform.build(tmp_path / "home")
    build_features(str(wh.home))
    settings = {"max_epochs": 3, "patience": 3}
    data = load_dataset(wh, MAX_HISTORY)

    def model():
        return build("bpr-mf", "cpu", {}, settings)

    path = artifacts.unfinished_fit(wh.models_dir, "bpr-mf")
    stopped_after(1, model, data, path, monkeypatch)  # the fit `train` would run (its settings, seed 3), stopped after epoch 1
    capsys.readouterr()
    assert cli(["--home", str(wh.home), "models"]) == 0  # says how far the stopped fit got and the command that continues it
    out = capsys.readouterr().out
    assert "bpr-mf: a stopped fit (1 epoch finished, last saved " in out, out
    assert "train --models bpr-mf --seed 3 --config FILE` continues it (FILE: a rankers TOML whose [bpr-mf] table sets max_epochs = 3, patience = 3)" in out, (
        out
    )
    # After new events the same command trains from epoch 1: said so, not "continues it" (probe).
    later = tiny_platform.START + timedelta(days=30)
    copy = tmp_path / "copy"
    shutil.copytree(wh.home, copy)
    event = write_csv(tmp_path / "one.csv", ["user_id", "item_id", "event_ts", "event", "watch_ratio"], [["user00", "i000", later.isoformat(), "like", ""]])
    assert cli(["--home", str(copy), "ingest", "events", str(event)]) == 0
    capsys.readouterr()
    assert cli(["--home", str(copy), "models"]) == 0
    out = capsys.readouterr().out
    assert "bpr-mf: a stopped fit (1 epoch finished, last saved " in out and "continues it" not in out, out
    assert "; `events` changed since `samples` was built: `reelsense --home " in out, out
    assert "rebuilds it first, then continues the fit if its rows come out the same, else trains from epoch 1 (FILE:" in out, out
    build_features(str(copy))
    assert cli(["--home", str(copy), "models"]) == 0
    out = capsys.readouterr().out
    assert "; the data, items or content changed since it ran: `reelsense --home " in out, out
    assert "--config FILE` trains from epoch 1 and replaces it (FILE:" in out, out
    # Inside a flow the fit's messages are log lines (log_prints), whose handler another test may
    # have made: the outcome is checked here, the words outside flows above.
    metas = train_rankers(str(wh.home), models=["bpr-mf"], seed=3, device="cpu", settings={"bpr-mf": settings})
    assert not path.exists()
    whole = model()
    whole.fit(data, seed=3)
    saved = artifacts.load(wh.models_dir, "bpr-mf", data, {}, "cpu")
    assert without_seconds(metas["bpr-mf"]["history"]) == without_seconds(whole.history)
    assert metas["bpr-mf"]["fit_continued_after"] == 1
    assert all(torch.equal(a, b) for a, b in zip(weights(saved).values(), weights(whole).values(), strict=True))
    # Its table row keeps the seed it was trained with, apart from the evaluation's seed (probe: a
    # re-ranker's advice trained its base again at the default seed).
    from flows.rank import evaluate_rankers

    row = evaluate_rankers(str(wh.home), models=["bpr-mf"], seed=0, max_users=20, device="cpu")["models"]["bpr-mf"]
    assert row["train_seed"] == 3 and row["version"] == metas["bpr-mf"]["version"], row

    # --force trains from epoch 1, and says what it discards.
    stopped_after(1, model, data, path, monkeypatch)
    said: list[str] = []
    monkeypatch.setattr("flows.rank.say", lambda message, *args, **kwargs: said.append(message))
    metas = train_rankers(str(wh.home), models=["bpr-mf"], seed=3, device="cpu", force=True, settings={"bpr-mf": settings})
    assert any(m.startswith("--force: discarding bpr-mf's stopped fit (1 epoch finished") for m in said), said
    assert metas["bpr-mf"]["fit_continued_after"] == 0 and not path.exists()
    # A reused model removes a stopped fit of itself, never one of other settings (probe: the
    # printed command, without --config, reused the saved model and deleted the stopped fit).
    stopped_after(1, model, data, path, monkeypatch)
    said.clear()
    saved = artifacts.latest(wh.models_dir, "bpr-mf")["version"]
    assert cli(["--home", str(wh.home), "models"]) == 0  # probe: it said the command "continues it"
    out = capsys.readouterr().out
    assert f"; the saved {saved} is this fit, finished: `reelsense --home {wh.home} train --models bpr-mf --seed 3 --config FILE` reuses it and deletes" in out
    # A damaged LATEST: no saved model to compare with, so the fit is continued, and the table says why (review: untested).
    marker = wh.models_dir / "rankers" / "bpr-mf" / "LATEST"
    marker.write_text("no-such-version\n")
    assert cli(["--home", str(wh.home), "models"]) == 0
    out, err = capsys.readouterr()
    assert "bpr-mf: a stopped fit (1 epoch finished, last saved " in out and "--config FILE` continues it (FILE:" in out, out
    assert "is this fit" not in out and "*" not in out, out
    assert f"reelsense: warning: {marker} names no readable version (it names no-such-version, which is not there): " in err, err
    assert f"readable versions (the newest: {saved}) into that file, or `reelsense --home {wh.home} train --models bpr-mf` trains one anew" in err
    assert err.rstrip().endswith("trains one anew; until then no bpr-mf is marked latest"), err
    marker.write_text(f"{saved}\n")
    metas = train_rankers(str(wh.home), models=["bpr-mf"], seed=3, device="cpu", settings={"bpr-mf": settings})
    assert metas["bpr-mf"]["reused"] and not path.exists()
    # Said (probe: a stopped `train --force` of the saved model's own fit went without a word).
    assert f"discarding bpr-mf's stopped fit (1 epoch finished): the saved {metas['bpr-mf']['version']} is the same fit, finished" in said, said
    stopped_after(1, lambda: build("bpr-mf", "cpu", {}, {**settings, "lr": 0.01}), data, path, monkeypatch)
    metas = train_rankers(str(wh.home), models=["bpr-mf"], seed=3, device="cpu", settings={"bpr-mf": settings})
    assert metas["bpr-mf"]["reused"] and path.exists()

    # A `train --force` stopped by Ctrl-C says how to continue (its own command would start over).
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("flows.rank.train_rankers", ctrl_c)
    capsys.readouterr()
    assert cli(["--home", str(wh.home), "train", "--models", "bpr-mf", "--force"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("reelsense: interrupted; the stopped fit is kept: `train` without --force continues it, or reuses the saved model")
    assert "rerun the same command" not in err  # probe: the same command, --force, starts over
    # ... and so does the `reelsense` program's signal handler (probe: it printed "rerun the same command").
    import signal
    import sys

    import flows.cli

    lines = {}

    def handlers(line_of):
        lines.update({signum: line_of(signum) for signum in (signal.SIGINT, signal.SIGTERM)})
        return (lambda signals=True: None), (lambda: None)

    monkeypatch.setattr(flows.cli, "_exit_at_once_on_interrupt", handlers)
    monkeypatch.setattr(flows.cli, "_stop_at_once_while_exiting", lambda: None)
    monkeypatch.setattr(sys, "argv", ["reelsense", "--home", str(wh.home), "train", "--models", "bpr-mf", "--force"])
    assert cli(None) == 130
    assert lines[signal.SIGINT].startswith("reelsense: interrupted; the stopped fit is kept: `train` without --force continues it")
    assert lines[signal.SIGTERM].startswith("reelsense: stopped by SIGTERM; the stopped fit is kept: `train` without --force continues it")
    # Only a stopped fit of a ranker it trains counts (review: bpr-mf's fit is no sasrec's).
    args = flows.cli.build_parser().parse_args(["--home", str(wh.home), "train", "--models", "sasrec", "--force"])
    assert flows.cli._stopped_line(args, signal.SIGINT) == flows.cli.INTERRUPTED

    # `models` with continued and uncontinued versions side by side, and a stopped fit in the folder
    # of a ranker this version does not train (review: a traceback, then exit 2 listing nothing).
    stray = wh.models_dir / "rankers" / "id-sequence" / "unfinished.pt"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(path.read_bytes())
    assert cli(["--home", str(wh.home), "models"]) == 0
    out = capsys.readouterr().out
    assert "id-sequence: a stopped fit (1 epoch finished" in out and "retired" in out, out
    assert "lr = 0.01" in out and out.count("bpr-mf") >= 3, out  # the stopped fit of other settings, and the versions


def test_models_skips_a_damaged_model_folder_and_says_so(tmp_path, capsys):
    from flows.cli import main as cli
    from ranker import artifacts

    folder = tmp_path / "home" / "models" / "rankers" / "sasrec" / "20260101T000000-deadbeef"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("{bad")
    (folder.parent / "LATEST").write_text(folder.name + "\n")  # the newest version is the damaged one
    assert artifacts.list_models(tmp_path / "home" / "models") == []
    assert cli(["--home", str(tmp_path / "home"), "models"]) == 0
    captured = capsys.readouterr()
    assert f"skipped {folder}: its meta.json is unreadable" in captured.err and "no trained models" in captured.out
    advice = r"meta.json is damaged .*; delete .* \(no command reads that version\); `reelsense train --models sasrec` trains sasrec where no"
    with pytest.raises(ReelsenseError, match=advice):
        artifacts.latest(tmp_path / "home" / "models", "sasrec")


def test_a_damaged_latest_of_a_retired_or_unsaved_ranker_offers_only_what_works(tmp_path):
    """Review: the advice named `train --models id-sequence` (retired) and versions that were not there."""
    from flows.latest import check_latest, damaged_latest, latest_meta

    models = tmp_path / "models"
    for name in ("id-sequence", "sasrec"):
        (models / "rankers" / name).mkdir(parents=True)
        (models / "rankers" / name / "LATEST").write_text("gone\n")
    retired = damaged_latest(models, "id-sequence", ValueError("unused"))
    assert retired == f"{models / 'rankers' / 'id-sequence' / 'LATEST'} names no readable version (it names gone, which is not there): " + (
        "delete that file (then no id-sequence is the latest)"
    )
    with pytest.raises(ReelsenseError, match=r"\(it names gone, which is not there\), and no version of sasrec is readable: `reelsense train --models sas"):
        latest_meta(models, "sasrec")
    (models / "rankers" / "sasrec" / "LATEST").unlink()  # no versions and no LATEST: nothing to refuse; a retired ranker is not checked
    check_latest(models)
    # Probe: a path in LATEST read another ranker's version (and prune deleted sasrec's only one); a
    # deleted LATEST beside a saved version read "no trained sasrec".
    for name, version in (("sasrec", "v1"), ("lstm-attn", "v2")):
        (models / "rankers" / name / version).mkdir(parents=True)
        (models / "rankers" / name / version / "meta.json").write_text(json.dumps({"name": name, "version": version}))
    (models / "rankers" / "lstm-attn" / "LATEST").write_text("v2\n")
    (models / "rankers" / "sasrec" / "LATEST").write_text("../lstm-attn/v2\n")
    with pytest.raises(ReelsenseError, match=r"\(it holds '\.\./lstm-attn/v2', which is no version's name\): write its one readable version, v1 into"):
        check_latest(models)
    (models / "rankers" / "sasrec" / "LATEST").unlink()
    with pytest.raises(ReelsenseError, match=r"LATEST is missing, though sasrec has 1 saved version\(s\): write its one readable version, v1 into that file"):
        latest_meta(models, "sasrec")
    (models / "rankers" / "sasrec" / "LATEST").write_text("v1\n")
    assert latest_meta(models, "sasrec") == {"name": "sasrec", "version": "v1"}


def test_settings_are_printed_as_a_rankers_toml_writes_them():
    from flows.console import rankers_toml, toml_value

    assert [toml_value(v) for v in (True, False, 0.001, 20, "x")] == ["true", "false", "0.001", "20", '"x"']
    # A table of no settings is no FILE to write (probe: "whose [sasrec-content] table sets )").
    assert rankers_toml({"sasrec-content": {}}) == ""
    assert rankers_toml({"sasrec": {}, "bpr-mf": {"patience": 3}}) == " (FILE: a rankers TOML whose [bpr-mf] table sets patience = 3)"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_the_epoch_bar_draws_on_a_terminal_and_leaves_a_log_no_bar_at_zero(terminal, monkeypatch):
    """A terminal sees the bar from the first batch; a log gets its first line only after 30 s, so
    an epoch shorter than that leaves no "0/N" bar behind (probe: that was all a small fit logged)."""
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    for _ in epoch_bar(range(25), 25, "sasrec", 0):
        pass
    assert ("0/25" in err.getvalue()) is terminal


@pytest.mark.parametrize("name", ["sasrec", "lstm-attn"])
def test_a_short_fit_into_a_log_draws_no_bar_line_a_step(name, data, capsys):
    """The loss beside the bar was drawn at once each step, with 0 batches done (tqdm counts lazily):
    a "0/N" line a step in a log (the MicroLens benchmark's stderr)."""
    make = {
        "sasrec": lambda: Sasrec(use_content=False, config=replace(FAST, max_epochs=1, batch=2)),
        "lstm-attn": lambda: LstmAttn(config=replace(FAST_LSTM, max_epochs=1, batch=16)),
    }
    make[name]().fit(data, seed=0)
    err = capsys.readouterr().err
    assert f"{name} epoch 1: loss" in err and "batch/s" not in err


def test_models_lists_the_versions_of_a_ranker_whose_latest_is_not_text_or_a_folder(tmp_path, capsys):
    """Probe: list_models caught only a LATEST naming a damaged version; one of binary bytes or a
    folder stopped `models` with a traceback."""
    import json

    from flows.cli import main as cli
    from ranker import artifacts

    models = tmp_path / "home" / "models"
    folder = models / "rankers" / "sasrec" / "20260101T000000-deadbeef"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"name": "sasrec", "version": folder.name, "seed": 0, "data_fingerprint": "f"}))
    marker = folder.parent / "LATEST"
    marker.write_text(folder.name + "\n")
    assert [m["latest"] for m in artifacts.list_models(models)] == [True]
    marker.write_bytes(b"\xff\xfe\x00 not text")
    assert [(m["version"], m["latest"]) for m in artifacts.list_models(models)] == [(folder.name, False)]
    marker.unlink()
    marker.mkdir()
    assert [m["latest"] for m in artifacts.list_models(models)] == [False]
    capsys.readouterr()
    assert cli(["--home", str(tmp_path / "home"), "models"]) == 0  # it refused to list any version
    out, err = capsys.readouterr()
    assert folder.name in out and "until then no sasrec is marked latest" in err, (out, err)
