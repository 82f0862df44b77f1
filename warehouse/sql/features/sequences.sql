-- Behaviour sequences for every positive interaction, with leave-one-out splits: the rows of
-- `samples` (build-features writes them; ranker/data.py reads them).
-- $max_history: the last N interactions kept per target; $buckets: the events partitions (user_bucket)
-- to read (all of them for training; a shard of users for scoring).
--
-- 1. interactions: the events of one impression (watch, like, comment, share after it) are one
--    interaction, anchored at the impression's time (ASOF join to the latest impression of the
--    same user and item at or before the event); an event with no impression before it (MicroLens)
--    is an interaction of its own.
-- 2. positive: liked, commented, shared, or watched at least half (a bare impression is not).
-- 3. history: every interaction of the user strictly before the target's time (RANGE ... 1
--    PRECEDING on microseconds), so events sharing a timestamp never see each other: no leakage.
-- 4. split: per user with at least 3 positives, the last positive is test, the one before valid.
WITH ev AS (
    SELECT user_id, item_id, epoch_us(event_ts) AS ts, event, watch_ratio, user_bucket FROM events
    WHERE list_contains($buckets, user_bucket)
),
impressions AS (
    SELECT user_id, item_id, ts FROM ev WHERE event = 'impression'
),
anchored AS (
    SELECT e.*, coalesce(i.ts, e.ts) AS anchor_ts
    FROM ev e ASOF LEFT JOIN impressions i
      ON e.user_id = i.user_id AND e.item_id = i.item_id AND e.ts >= i.ts
),
interactions AS (
    SELECT user_id, item_id, anchor_ts AS ts, any_value(user_bucket) AS user_bucket,
           bool_or(event = 'watch') AS watched, max(watch_ratio) AS watch_ratio,
           bool_or(event = 'like') AS liked, bool_or(event = 'comment') AS commented,
           bool_or(event = 'share') AS shared,
           CASE WHEN bool_or(event = 'comment') THEN 'comment' WHEN bool_or(event = 'share') THEN 'share'
                WHEN bool_or(event = 'like') THEN 'like' WHEN bool_or(event = 'watch') THEN 'watch'
                ELSE 'impression' END AS event
    FROM anchored
    GROUP BY user_id, item_id, anchor_ts
),
flagged AS (
    SELECT *, (liked OR commented OR shared OR (watched AND coalesce(watch_ratio, 1) >= 0.5)) AS positive
    FROM interactions
),
with_history AS (
    -- Each interaction's earlier ones in time order, and in item order within a timestamp (the same
    -- lists whatever order the files are read in): the rows before it by (ts, item_id), cut to the
    -- n_earlier strictly earlier in time, so events sharing a timestamp never see each other. (An
    -- ordered list() over the RANGE frame sorts each frame again: 2-3.5x slower, review.)
    SELECT *,
           list(item_id) OVER r AS all_items,
           list(event) OVER r AS all_events,
           list(coalesce(watch_ratio, -1)::FLOAT) OVER r AS all_ratios,
           count(*) OVER w AS n_earlier
    FROM flagged
    WINDOW w AS (PARTITION BY user_id ORDER BY ts RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
           r AS (PARTITION BY user_id ORDER BY ts, item_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
targets AS (
    SELECT *,
           all_items[1:n_earlier] AS h_items, all_events[1:n_earlier] AS h_events, all_ratios[1:n_earlier] AS h_ratios,
           row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, item_id DESC) AS from_end,
           count(*) OVER (PARTITION BY user_id) AS n_positive
    FROM with_history WHERE positive
)
SELECT user_id, item_id, make_timestamptz(ts) AS event_ts, event,
       watched, coalesce(watch_ratio, -1)::FLOAT AS watch_ratio, liked, commented,
       coalesce(h_items[greatest(len(h_items) - $max_history + 1, 1):], []) AS history_item_ids,
       coalesce(h_events[greatest(len(h_events) - $max_history + 1, 1):], []) AS history_events,
       coalesce(h_ratios[greatest(len(h_ratios) - $max_history + 1, 1):], []) AS history_watch_ratios,
       CASE WHEN n_positive >= 3 AND from_end = 1 THEN 'test'
            WHEN n_positive >= 3 AND from_end = 2 THEN 'valid' ELSE 'train' END AS split,
       user_bucket
FROM targets
ORDER BY user_id, event_ts, item_id
