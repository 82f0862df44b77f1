-- scores: see warehouse/schemas.py for the columns; partitioned by run_id (hive folders run_id=<id>/).
-- union_by_name: files written before ranked_from was added read it as NULL.
CREATE OR REPLACE VIEW scores AS
SELECT run_id, user_id, item_id, score, rank, model_version, scored_at, ranked_from
FROM read_parquet($files, hive_partitioning = true, hive_types = {'run_id': VARCHAR}, union_by_name = true);
