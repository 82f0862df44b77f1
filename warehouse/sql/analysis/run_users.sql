-- Each user of one score run and the most items it kept for them (the run's --k, unless every
-- user had fewer unengaged items than that). $run_id: the run.
SELECT user_id, max(rank) AS kept
FROM scores
WHERE run_id = $run_id
GROUP BY user_id
ORDER BY user_id
