"""MicroLens-50K ingest on the real files (marker `data`)."""

from __future__ import annotations

import pytest

from flows.cli import main
from warehouse import db
from warehouse.microlens import ingest_microlens

pytestmark = pytest.mark.data


def test_microlens_50k_counts_hold_after_a_second_ingest(wh, shared_data):
    root = shared_data / "microlens-50k"
    for attempt in range(2):
        items, events = ingest_microlens(wh, root)
        assert (items.input_rows, events.input_rows) == (19_220, 359_708)
        assert (items.quarantined, events.quarantined) == (0, 0)
        assert events.accepted == (359_708 if attempt == 0 else 0)
        db.refresh_views(wh)
        stats = db.query(
            wh,
            """
            SELECT (SELECT count(*) FROM events) AS events,
                   (SELECT count(DISTINCT user_id) FROM events) AS users,
                   (SELECT count(*) FROM items) AS items,
                   (SELECT count(*) FROM items WHERE video_uri IS NOT NULL) AS videos,
                   (SELECT count(DISTINCT event) FROM events) AS kinds""",
        ).to_pylist()[0]
        assert stats == {"events": 359_708, "users": 50_000, "items": 19_220, "videos": 3, "kinds": 1}


def test_microlens_order_becomes_ordinal_timestamps(wh, shared_data):
    ingest_microlens(wh, shared_data / "microlens-50k")
    db.refresh_views(wh)
    # User 2's line in the pairs file: 16657 915 9127 3775 9500 10949 5299.
    seq = db.query(wh, "SELECT item_id, epoch(event_ts) AS t FROM events WHERE user_id = $1 ORDER BY event_ts", ["2"])
    assert seq.column("item_id").to_pylist() == ["16657", "915", "9127", "3775", "9500", "10949", "5299"]
    assert seq.column("t").to_pylist() == list(range(7))


def test_cli_microlens_count_is_359708(tmp_path, shared_data, capsys):
    home = str(tmp_path / "home")
    for _ in range(2):
        assert main(["--home", home, "ingest", "microlens", str(shared_data / "microlens-50k")]) == 0
        capsys.readouterr()
        assert main(["--home", home, "sql", "SELECT count(*) FROM events"]) == 0
        assert "| 359708 " in capsys.readouterr().out


def test_missing_microlens_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["--home", str(tmp_path / "home"), "ingest", "microlens", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")  # probe: a file was "no such directory"
    assert main(["--home", str(tmp_path / "home"), "ingest", "microlens", str(tmp_path / "afile")]) == 2
    assert f"{tmp_path / 'afile'}: a file, not a folder; expected the MicroLens folder" in capsys.readouterr().err
