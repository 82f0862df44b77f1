-- The model versions that wrote the scores of one run, with their row counts and largest rank (a
-- run id belongs to one model version and one --k: flows/score.py refuses to add another one's
-- rows, or a smaller top). $run_id: the run.
SELECT model_version, count(*) AS n_rows, max(rank) AS max_rank
FROM scores
WHERE run_id = $run_id
GROUP BY model_version
ORDER BY model_version
