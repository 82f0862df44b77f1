-- explanations: see warehouse/schemas.py for the columns; partitioned by run_id (hive folders run_id=<id>/).
CREATE OR REPLACE VIEW explanations AS
SELECT run_id, user_id, item_id, model_version, history_item_ids, attention, modality_names, modality_contributions,
       fusion_weights, feature_names, feature_contributions, summary
FROM read_parquet($files, hive_partitioning = true, hive_types = {'run_id': VARCHAR}, union_by_name = true);
