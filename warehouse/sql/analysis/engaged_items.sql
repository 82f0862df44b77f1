-- The items each user engaged with (the `engagements` view), at any time, not only in the history a
-- ranker sees. Scoring never recommends these (ranker/scoring.py).
-- $buckets: the events partitions (user_bucket) to read: one scoring shard's users.
SELECT DISTINCT user_id, item_id
FROM engagements
WHERE list_contains($buckets, user_bucket)
ORDER BY user_id, item_id
