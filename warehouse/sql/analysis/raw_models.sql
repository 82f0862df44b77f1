-- The raw (not aligned) embedding models per modality, with how many current items each covers:
-- the inputs align-items can train on. It takes the most complete model of each modality and, of
-- models equally complete (exact and keyframe-sampled frames of every item), the newest; it logs
-- its choice whenever a modality has more than one.
SELECT modality, model, count(*) AS items, max(created_at) AS newest
FROM current_embeddings
WHERE modality <> 'fused' AND NOT starts_with(model, 'aligned@')
GROUP BY modality, model ORDER BY modality, items DESC, newest DESC, model
