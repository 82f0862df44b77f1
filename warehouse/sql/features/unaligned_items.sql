-- Items whose current content has raw embeddings (frames, text, audio) but no vector of the fused
-- model $model: extracted after align-items last ran. A content ranker refuses to score them with zeros.
-- $raw: the raw models the alignment was trained on (NULL: any raw model counts).
SELECT DISTINCT e.item_id FROM current_embeddings e
WHERE e.modality <> 'fused' AND NOT starts_with(e.model, 'aligned@')
  AND ($raw IS NULL OR list_contains($raw, e.model))
  AND e.item_id NOT IN (
    SELECT f.item_id FROM current_embeddings f
    WHERE f.modality = 'fused' AND f.model = $model)
ORDER BY 1
