-- Score-batch runs, newest first: when each was scored, by which model version, how many rows.
SELECT run_id, max(scored_at) AS scored_at, any_value(model_version) AS model_version, count(*) AS rows
FROM scores
GROUP BY run_id
ORDER BY scored_at DESC, run_id;
