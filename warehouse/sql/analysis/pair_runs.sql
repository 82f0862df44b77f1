-- $user, $item: the score-batch runs that scored the pair, newest first (by the run's first score,
-- as runs.sql orders them), and whether each has its explanation stored (`reelsense report --run-id`
-- stores them), with the model that scored each.
WITH runs AS (SELECT run_id, min(scored_at) AS scored_at, any_value(model_version) AS model_version FROM scores GROUP BY run_id)
SELECT r.run_id, r.scored_at, r.model_version,
       EXISTS (SELECT 1 FROM explanations e WHERE e.run_id = r.run_id AND e.user_id = $user AND e.item_id = $item) AS explained
FROM runs r
WHERE r.run_id IN (SELECT run_id FROM scores WHERE user_id = $user AND item_id = $item)
ORDER BY r.scored_at DESC, r.run_id
