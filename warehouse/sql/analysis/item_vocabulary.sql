-- Every item id the rankers know: those in `items` and those only named by events, sorted.
SELECT item_id FROM items UNION SELECT DISTINCT item_id FROM events ORDER BY 1
