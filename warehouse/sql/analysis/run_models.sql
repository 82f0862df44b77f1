-- The model versions that wrote the scores of one run, with their row counts (a run id belongs to
-- one model version: flows/score.py refuses to add another one's rows). $run_id: the run.
SELECT model_version, count(*) AS n_rows
FROM scores
WHERE run_id = $run_id
GROUP BY model_version
ORDER BY model_version
