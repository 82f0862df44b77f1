-- embeddings: one vector per (item, modality, model, content_hash), partitioned by modality.
-- Parquet's fixed_size_list reads back as FLOAT[]; cast to FLOAT[dim] for array_cosine_similarity.
CREATE OR REPLACE VIEW embeddings AS
SELECT item_id, modality, model, dim, vector, tags, content_hash, created_at
FROM read_parquet($files, hive_partitioning = true, union_by_name = true);
