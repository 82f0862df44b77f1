-- A digest of the data a score run ranks from: every row of `samples` (the histories, and the
-- popularity counted from them) and every (user, item) pair of `engagements` (never served). A sum
-- of row hashes, so order-free: a rebuild of `samples` from the same events (`features`, a
-- compaction) gives the same digest, and a changed, added or removed row another one. The model
-- version is recorded beside it (scores.model_version); content vectors are not part of it.
SELECT (SELECT coalesce(sum(hash(s)::HUGEINT), 0) FROM samples s)::VARCHAR || '-'
       || (SELECT coalesce(sum(hash(user_id, item_id)::HUGEINT), 0) FROM (SELECT DISTINCT user_id, item_id FROM engagements))::VARCHAR
       AS digest
