-- scores: see warehouse/schemas.py for the columns; partitioned by run_id (hive folders run_id=<id>/).
CREATE OR REPLACE VIEW scores AS
SELECT run_id, user_id, item_id, score, rank, model_version, scored_at
FROM read_parquet($files, hive_partitioning = true, hive_types = {'run_id': VARCHAR});
