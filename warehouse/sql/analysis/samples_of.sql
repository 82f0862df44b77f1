-- The rows of `samples` of the users in some events partitions ($buckets: all of them for training,
-- a shard of users for scoring), in the order build-features wrote them (each user's in time order).
SELECT * FROM samples
WHERE list_contains($buckets, user_bucket)
ORDER BY user_id, event_ts, item_id
