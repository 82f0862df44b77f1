-- item_tags: readable tags of every item, from the models that embedded its current content and its title:
-- kind 'picture' (ImageNet labels of the frames, or CLIP zero-shot prompts), 'music' (musicnn or CLAP
-- tags), 'hashtag' (the title's #tags) and 'keyword' (the title's longer words, stop words removed).
-- position: 1 = the most salient tag of that kind.
WITH current_tags AS (
    SELECT DISTINCT e.item_id, e.modality, e.tags
    FROM current_embeddings e
    WHERE e.tags IS NOT NULL AND len(e.tags) > 0 AND NOT starts_with(e.model, 'aligned@') AND e.modality <> 'fused'
),
model_tags AS (
    SELECT item_id,
           CASE modality WHEN 'frames' THEN 'picture' WHEN 'audio' THEN 'music' ELSE 'hashtag' END AS kind,
           unnest(tags) AS tag, generate_subscripts(tags, 1) AS position
    FROM current_tags
),
title_words AS (
    SELECT item_id, unnest(regexp_split_to_array(lower(regexp_replace(coalesce(title, ''), '#[^#]*', '', 'g')), '[^[:alpha:]]+')) AS word
    FROM items
),
keywords AS (
    SELECT item_id, 'keyword' AS kind, word AS tag, row_number() OVER (PARTITION BY item_id ORDER BY length(word) DESC, word) AS position
    FROM (SELECT DISTINCT item_id, word FROM title_words) t
    WHERE length(word) >= 4 AND word NOT IN ('this', 'that', 'with', 'from', 'your', 'have', 'what', 'when', 'will', 'just',
        'they', 'them', 'there', 'their', 'about', 'into', 'than', 'then', 'very', 'more', 'most', 'some', 'like', 'best',
        'must', 'real', 'easy', 'quick', 'today', 'were', 'been', 'also', 'only', 'over', 'here', 'which', 'watch', 'video')
)
SELECT item_id, kind, tag, min(position)::INTEGER AS position
FROM (SELECT * FROM model_tags UNION ALL SELECT * FROM keywords)
WHERE tag IS NOT NULL AND tag <> ''
GROUP BY ALL
ORDER BY item_id, kind, position
