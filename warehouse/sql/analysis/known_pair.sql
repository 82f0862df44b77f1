-- $user, $item: how many events the user has, whether the item is in items or events, and how
-- often the user engaged with the item (the `engagements` view: score-batch never serves such an item).
SELECT (SELECT count(*) FROM events WHERE user_id = $user) AS events,
       (SELECT count(*) FROM items WHERE item_id = $item) + (SELECT count(*) FROM events WHERE item_id = $item) AS item,
       (SELECT count(*) FROM engagements WHERE user_id = $user AND item_id = $item) AS engaged
