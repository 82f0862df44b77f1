-- A digest of the data a score run ranks from (flows/score.py keeps it beside the run's rows):
-- every row of `samples` (the histories, and the popularity counted from them), every engaged
-- (user, item) pair (never served), the item vocabulary (`items` and the items only `events`
-- name), and the keys of the current content vectors. Each part a sum of row hashes, so order-free:
-- a rebuild of `samples` from the same events (`features`, a compaction) gives the same digest; a
-- changed, added or removed row gives another (DuckDB's hash(): a DuckDB upgrade may change it too).
SELECT concat_ws('-',
    (SELECT coalesce(sum(hash(s)::HUGEINT), 0) FROM samples s),
    (SELECT coalesce(sum(hash(user_id, item_id)::HUGEINT), 0) FROM (SELECT DISTINCT user_id, item_id FROM engagements)),
    (SELECT coalesce(sum(hash(item_id)::HUGEINT), 0) FROM (SELECT item_id FROM items UNION SELECT item_id FROM events)),
    (SELECT coalesce(sum(hash(item_id, modality, model, content_hash)::HUGEINT), 0) FROM current_embeddings)
) AS digest
