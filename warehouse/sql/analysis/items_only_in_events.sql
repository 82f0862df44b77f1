-- Items that events name but `items` does not hold (events may arrive before their items): how
-- many, and the first three ids (`reelsense ingest events` says so).
SELECT count(*) AS n, coalesce(list(item_id ORDER BY item_id)[1:3], []) AS examples
FROM (SELECT DISTINCT e.item_id FROM events AS e ANTI JOIN items AS i ON e.item_id = i.item_id)
