-- embeddings: one vector per (item, modality, model, content_hash), partitioned by modality.
-- Parquet's fixed_size_list reads back as FLOAT[]; the vectors_<modality>_<model> views cast it
-- to FLOAT[dim] for array_cosine_similarity. SELECT * with union_by_name: files written before
-- schema version 2 lack fusion_weights.
CREATE OR REPLACE VIEW embeddings AS
SELECT * FROM read_parquet($files, hive_partitioning = true, union_by_name = true);
