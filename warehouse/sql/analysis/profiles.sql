-- Interest profiles: each user's tags weighted by what they did with the items that carry them.
-- Weights per event: impression 0, watch its watch ratio (capped at 1.5; 0.5 when unknown), like 2,
-- comment 3, share 3; a tag's weight is divided by its position (the most salient tag counts most).
-- share: the tag's weight over the user's total weight for that kind. $top: tags kept per kind.
WITH weighted AS (
    SELECT user_id, item_id,
           sum(CASE event WHEN 'watch' THEN least(coalesce(watch_ratio, 0.5), 1.5) WHEN 'like' THEN 2
                          WHEN 'comment' THEN 3 WHEN 'share' THEN 3 ELSE 0 END) AS weight
    FROM events GROUP BY ALL
),
tagged AS (
    SELECT w.user_id, t.kind, t.tag, sum(w.weight / t.position) AS weight
    FROM weighted w JOIN item_tags t USING (item_id)
    WHERE w.weight > 0 GROUP BY ALL
)
SELECT user_id, kind, tag, weight, weight / sum(weight) OVER (PARTITION BY user_id, kind) AS share
FROM tagged
QUALIFY row_number() OVER (PARTITION BY user_id, kind ORDER BY weight DESC, tag) <= $top
ORDER BY user_id, kind, weight DESC, tag
