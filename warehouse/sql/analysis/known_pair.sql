-- $user, $item: how many events the user has, whether the item is in items or events, and how
-- often the user engaged with the item (any event but a bare impression: score-batch never serves it).
SELECT (SELECT count(*) FROM events WHERE user_id = $user) AS events,
       (SELECT count(*) FROM items WHERE item_id = $item) + (SELECT count(*) FROM events WHERE item_id = $item) AS item,
       (SELECT count(*) FROM events WHERE user_id = $user AND item_id = $item AND event <> 'impression') AS engaged
