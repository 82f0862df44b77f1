-- $models: the current-content vectors of those raw models, for align-items.
SELECT item_id, content_hash, modality, vector FROM current_embeddings WHERE list_contains($models, model)
