-- The items each user engaged with: any event other than a bare impression (watch, like, comment,
-- share), at any time, not only in the history a ranker sees. Scoring never recommends these
-- (ranker/scoring.py), and the ranker evaluation's "history masked" protocol masks the same set.
-- $buckets: the events partitions (user_bucket) to read: one scoring shard's users.
SELECT DISTINCT user_id, item_id
FROM events
WHERE event <> 'impression' AND list_contains($buckets, user_bucket)
ORDER BY user_id, item_id
