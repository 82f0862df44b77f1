-- Score-batch runs, newest first: when each was first scored (a run completed or extended later is
-- not made newer by it: probe, a legacy run completed by 4 rows became "newest" and prune kept it
-- over the run scored hours after it), by which model version, how many rows.
SELECT run_id, min(scored_at) AS scored_at, any_value(model_version) AS model_version, count(*) AS rows
FROM scores
GROUP BY run_id
ORDER BY scored_at DESC, run_id;
