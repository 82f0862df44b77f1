-- The model versions that wrote the scores of one run, with their row counts, largest rank and the
-- digests of the data they ranked from (a run id belongs to one model version, one --k and one
-- state of the data: flows/score.py refuses to add another one's rows, a smaller top, or rows
-- ranked from other data). $run_id: the run.
SELECT model_version, count(*) AS n_rows, max(rank) AS max_rank,
       list(DISTINCT ranked_from ORDER BY ranked_from) FILTER (WHERE ranked_from IS NOT NULL) AS ranked_from
FROM scores
WHERE run_id = $run_id
GROUP BY model_version
ORDER BY model_version
