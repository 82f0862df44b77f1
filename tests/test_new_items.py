"""Issue 17 #4 and #5 through the real command line: a new item after training, as the error
messages tell the user to proceed (ingest, extract, features, train, score)."""

from __future__ import annotations

import shutil

import tiny_platform
from flows.cli import main
from warehouse.store import Warehouse


def _home_with_new_item(ranked_home, tmp_path, *, aligned: bool) -> str:
    home = tmp_path / "home"
    shutil.copytree(ranked_home.home, home)
    (tmp_path / "new.csv").write_text("item_id,title,video_uri\ni0new,brand new cooking clip #cooking,\n")
    assert main(["--home", str(home), "ingest", "items", str(tmp_path / "new.csv")]) == 0
    tiny_platform.add_item_vectors(Warehouse(home), "i0new", aligned=aligned)  # what extract (and align) write
    assert main(["--home", str(home), "features"]) == 0
    return str(home)


def test_train_after_a_new_item_retrains_instead_of_reusing_a_stale_model(ranked_home, tmp_path, capsys):
    home = _home_with_new_item(ranked_home, tmp_path, aligned=True)
    capsys.readouterr()
    assert main(["--home", home, "train", "--models", "lstm-attn"]) == 0  # crashed with a size mismatch before
    assert "reused" not in capsys.readouterr().out  # the item vocabulary and content changed
    assert main(["--home", home, "score", "--model", "lstm-attn", "--run-id", "n", "--users", "user00"]) == 0


def test_an_item_extracted_but_not_aligned_is_refused_not_scored_as_zeros(ranked_home, tmp_path, capsys):
    home = _home_with_new_item(ranked_home, tmp_path, aligned=False)
    capsys.readouterr()
    assert main(["--home", home, "train", "--models", "lstm-attn"]) == 2
    err = capsys.readouterr().err
    assert "1 items have raw embeddings but no fused:aligned@tiny vector (i0new); run `reelsense align`" in err
    assert "Traceback" not in err
