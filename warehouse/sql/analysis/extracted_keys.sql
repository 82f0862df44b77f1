-- $models: the (item, modality, model, content_hash) keys already embedded by those models.
SELECT item_id, modality, model, content_hash FROM embeddings WHERE list_contains($models, model)
