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
    assert f"1 item has raw embeddings but no fused:aligned@tiny vector (i0new); run `reelsense --home {home} align`" in err
    assert "Traceback" not in err


def test_only_the_alignments_own_raw_models_make_an_item_unaligned(ranked_home, tmp_path):
    """Raw vectors of a model the alignment was not trained on (another preset extracted
    alongside) do not make a new item "unaligned"; those of its own raw models do."""
    import json
    from datetime import datetime, timezone

    import pyarrow as pa

    from ranker.data import unaligned_items
    from warehouse import db, store
    from warehouse.schemas import EMBEDDINGS

    home = tmp_path / "home"
    shutil.copytree(ranked_home.home, home)
    (tmp_path / "new.csv").write_text("item_id,title,video_uri\ni0new,brand new cooking clip #cooking,\n")
    assert main(["--home", str(home), "ingest", "items", str(tmp_path / "new.csv")]) == 0
    wh = Warehouse(home)
    (wh.models_dir / "align" / "tiny").mkdir(parents=True)
    (wh.models_dir / "align" / "tiny" / "meta.json").write_text(json.dumps({"raw_models": {m: f"toy-{m}@1" for m in ("audio", "frames", "text")}}))
    content_hash = db.fetch(wh, "SELECT content_hash FROM items WHERE item_id = 'i0new'")[0]["content_hash"]

    def add_raw(model: str) -> None:
        store.append(
            wh,
            EMBEDDINGS,
            pa.Table.from_pylist(
                [
                    {
                        "item_id": "i0new",
                        "modality": "text",
                        "model": model,
                        "dim": 2,
                        "vector": [1.0, 0.0],
                        "tags": None,
                        "content_hash": content_hash,
                        "created_at": datetime.now(timezone.utc),
                        "fusion_weights": None,
                    }
                ],
                EMBEDDINGS.schema,
            ),
        )
        db.refresh_views(wh)

    add_raw("other-text@2")
    assert unaligned_items(wh, "aligned@tiny") == []
    add_raw("toy-text@1")
    assert unaligned_items(wh, "aligned@tiny") == ["i0new"]


def test_a_misfit_of_new_items_that_only_lack_align_says_align_not_ingest_and_extract(ranked_home, tmp_path, capsys):
    """Probe: evaluate after extract (align not rerun) told the user to ingest and extract the new
    item again; it has its raw embeddings, and `align` alone gives it its fused vector."""
    home = _home_with_new_item(ranked_home, tmp_path, aligned=False)
    capsys.readouterr()
    assert main(["--home", home, "evaluate", "--models", "lstm-attn"]) == 2
    err = capsys.readouterr().err
    said = "1 has no fused:aligned@tiny vector yet (i0new), only raw embeddings: run `reelsense --home"
    assert said in err and "align` first (it projects them with the trained alignment; a content ranker's train and score stop" in err, err
    assert "extract`" not in err and "go straight on" not in err, err  # review: a content ranker cannot go on without align


def test_a_checkpoint_of_another_content_width_names_the_models_to_retrain():
    """Review: the advice said `train --force` (every model, from epoch 1); for lstm-attn, lightgbm
    re-ranks it and must be retrained with it, or it stays on the old version."""
    from types import SimpleNamespace

    import numpy as np
    import pytest
    import torch

    from ranker.data import MissingContent
    from ranker.training import remap_items

    data = SimpleNamespace(content=np.zeros((3, 5), np.float32), content_source="text:minilm@1")
    state = {"items.proj.weight": torch.zeros(4, 3)}
    for name, models in (("lstm-attn", "lstm-attn,lightgbm"), ("sasrec-content", "sasrec-content")):
        with pytest.raises(
            MissingContent,
            match=rf"trained on 3-d content vectors, the warehouse gives 5-d \(text:minilm@1\); retrain it with `reelsense train --models {models}`$",
        ):
            remap_items(state, "items.", ["<pad>", "a", "b"], torch.zeros(3, dtype=torch.bool), data, name=name)
