-- $model (an aligned@<version> model): every modality's aligned vector of each item's current
-- content, with the fused vector's fusion weights.
SELECT item_id, modality, vector, fusion_weights FROM current_embeddings WHERE model = $model
