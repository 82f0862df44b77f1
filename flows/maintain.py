"""maintain-warehouse: the nightly compaction. Every append writes one small file per partition
(an hourly extract of 16-item batches leaves hundreds a day); appends stay flat however many there
are (they check only the files whose key ranges overlap, warehouse/store.py), but every reader
globs every file. This flow merges each partition that holds at least `min_files` small files into
files of about 32 MB, journaled, so a crash at any point loses and doubles nothing.

Compaction removes files that readers glob without the table lock, so it waits until the running
readers are done (`store.reading`: every reader in reelsense holds it; a DuckDB client of your own
does not) and holds new ones until it is done; writers wait for it on the table lock. It runs at
01:15 UTC (flows/serve.py), before build-features, because `samples` records the `events` files
it was built from and compaction renames them. `reelsense compact` does the same by hand (every
partition with 2 or more small files).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from warehouse import store
from warehouse.errors import WarehouseNotFound
from warehouse.schemas import TABLES
from warehouse.store import COMPACT_MIN_FILES, Warehouse


@flow(name="maintain-warehouse", log_prints=True)
def maintain_warehouse(home: str, min_files: int = COMPACT_MIN_FILES) -> dict[str, Any]:
    """Compact every table's partitions that hold at least `min_files` small files; returns files
    before and after per table."""
    wh = Warehouse(home)
    if not wh.tables_dir.exists():
        raise WarehouseNotFound(f"no warehouse in {wh.home}; run `reelsense ingest` (or `reelsense demo`) first")
    logger = get_run_logger()
    done = {}
    for name, spec in TABLES.items():
        before, after = store.compact(wh, spec, min_files=min_files)
        done[name] = {"files_before": before, "files_after": after}
        if after < before:
            logger.info("maintain-warehouse: %s %d files -> %d", name, before, after)
    return done
