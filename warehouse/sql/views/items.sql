-- items: the newest version of each item (a changed title or media file adds a version).
CREATE OR REPLACE VIEW items AS
SELECT * EXCLUDE (version_rank)
FROM (
    SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY ingested_at DESC, content_hash) AS version_rank
    FROM read_parquet($files, union_by_name = true)
)
WHERE version_rank = 1;
