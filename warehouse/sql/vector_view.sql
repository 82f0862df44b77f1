-- vectors of one (modality, model) as a fixed-size FLOAT[dim] array, for the current version of
-- each item only; ready for array_cosine_similarity / array_inner_product.
CREATE OR REPLACE VIEW $name AS
SELECT e.item_id, e.model, e.tags, e.vector::FLOAT[$dim] AS vector, e.content_hash, e.created_at, e.title
FROM current_embeddings e
WHERE e.modality = $modality AND e.model = $model;
