-- $modality, $model: each item's current-content vector of that model.
SELECT item_id, vector FROM current_embeddings WHERE modality = $modality AND model = $model
