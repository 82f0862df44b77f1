-- events: one row per user action, partitioned by user_bucket (hive folders user_bucket=N/).
CREATE OR REPLACE VIEW events AS
SELECT user_id, item_id, event_ts, event, watch_ratio, user_bucket
FROM read_parquet($files, hive_partitioning = true, hive_types = {'user_bucket': SMALLINT});
