-- Of the items an events file names, those that `items` does not hold (events may arrive before
-- their items): how many, and the first three ids (`reelsense ingest events` says so). Only the
-- file's items are checked, so the cost follows the file, not the events table. $items: their ids.
SELECT count(*) AS n, coalesce(list(f.item_id ORDER BY f.item_id)[1:3], []) AS examples
FROM (SELECT DISTINCT unnest($items::VARCHAR[]) AS item_id) AS f
ANTI JOIN items AS i ON f.item_id = i.item_id
