-- $user, $item: how many events the user has, and whether the item is in items or events.
SELECT (SELECT count(*) FROM events WHERE user_id = $user) AS events,
       (SELECT count(*) FROM items WHERE item_id = $item) + (SELECT count(*) FROM events WHERE item_id = $item) AS item
