-- The raw (not aligned) embedding models per modality, with how many current items each covers:
-- the inputs align-items can train on (it takes the most complete model of each modality).
SELECT modality, model, count(*) AS items
FROM current_embeddings
WHERE modality <> 'fused' AND NOT starts_with(model, 'aligned@')
GROUP BY ALL ORDER BY modality, items DESC, model
