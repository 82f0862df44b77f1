-- Each item's tags of each kind (picture, music, hashtag, keyword) as a list, most salient first.
SELECT item_id, kind, list(tag ORDER BY position) AS tags FROM item_tags GROUP BY ALL
