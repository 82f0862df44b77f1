-- The (modality, model) pairs that can give the rankers their content vector, best first: a fused
-- (aligned) vector before a text vector, then the model covering most current items, then the newest.
SELECT modality, model, count(*) AS n, max(created_at) AS newest
FROM current_embeddings
WHERE modality IN ('fused', 'text')
GROUP BY modality, model
ORDER BY modality = 'fused' DESC, n DESC, newest DESC
