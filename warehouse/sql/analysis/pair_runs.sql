-- $user, $item: the score-batch runs that scored the pair, newest first, and whether each has its
-- explanation stored (`reelsense report --run-id` stores them).
SELECT s.run_id, max(s.scored_at) AS scored_at,
       EXISTS (SELECT 1 FROM explanations e WHERE e.run_id = s.run_id AND e.user_id = $user AND e.item_id = $item) AS explained
FROM scores s
WHERE s.user_id = $user AND s.item_id = $item
GROUP BY s.run_id
ORDER BY scored_at DESC, s.run_id
