-- The users with events but no positive interaction (features/sequences.sql: a like, comment,
-- share or a watch of at least half), so no row in `samples`: score-batch has nothing to score
-- them from, and names them (probe: they were dropped unsaid). $every: all users; otherwise
-- $users, the users asked for.
SELECT DISTINCT user_id
FROM events
WHERE ($every OR list_contains($users, user_id))
  AND user_id NOT IN (SELECT user_id FROM samples)
ORDER BY user_id
