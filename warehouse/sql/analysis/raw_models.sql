-- The raw (not aligned) embedding models per modality, with how many current items each covers:
-- the inputs align-items can train on (it takes the most complete model of each modality; of
-- models equally complete, the newest, so after re-extracting with other settings, such as
-- keyframe sampling, align follows them as the vector views do).
SELECT modality, model, count(*) AS items, max(created_at) AS newest
FROM current_embeddings
WHERE modality <> 'fused' AND NOT starts_with(model, 'aligned@')
GROUP BY modality, model ORDER BY modality, items DESC, newest DESC, model
