-- $user, $item, $run (NULL: any run): the stored explanation of the pair, from the newest run.
SELECT e.*
FROM explanations e
LEFT JOIN (SELECT run_id, max(scored_at) AS t FROM scores GROUP BY run_id) s USING (run_id)
WHERE e.user_id = $user AND e.item_id = $item AND ($run IS NULL OR e.run_id = $run)
ORDER BY s.t DESC NULLS LAST
LIMIT 1
